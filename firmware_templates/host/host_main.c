/*
 * Host emulation harness: runs the generated model over a file of images and writes the
 * class scores, so the C can be compared with PyTorch image by image.
 *
 *   svt_host IMAGES.f32 SCORES.f32
 *
 * IMAGES.f32 holds N images of SVT_INPUT_SIZE float32 values (CHW) back to back;
 * SCORES.f32 receives N * SVT_NUM_CLASSES float32 values.
 */
#include <stdio.h>
#include <stdlib.h>

#include "model.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s IMAGES.f32 SCORES.f32\n", argv[0]);
        return 2;
    }
    FILE *in = fopen(argv[1], "rb");
    FILE *out = fopen(argv[2], "wb");
    if (in == NULL || out == NULL) {
        fprintf(stderr, "svt_host: cannot open %s\n", in == NULL ? argv[1] : argv[2]);
        return 2;
    }
    static float image[SVT_INPUT_SIZE];
    float scores[SVT_NUM_CLASSES];
    unsigned long count = 0;
    while (fread(image, sizeof(float), SVT_INPUT_SIZE, in) == SVT_INPUT_SIZE) {
        svt_model_run(image, scores);
        if (fwrite(scores, sizeof(float), SVT_NUM_CLASSES, out) != SVT_NUM_CLASSES) {
            fprintf(stderr, "svt_host: write failed\n");
            return 1;
        }
        ++count;
    }
    fclose(in);
    if (fclose(out) != 0) {
        fprintf(stderr, "svt_host: write failed\n");
        return 1;
    }
    fprintf(stderr, "svt_host: %lu images\n", count);
    return 0;
}
