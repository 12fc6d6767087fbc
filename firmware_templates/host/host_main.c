/*
 * Host emulation harness: runs the generated model over a file of images and writes the
 * class scores, so the C can be compared with PyTorch image by image.
 *
 *   svt_host IMAGES SCORES
 *
 * IMAGES holds N images of SVT_INPUT_SIZE values (CHW) back to back, as the model takes
 * them (float32, or uint8 pixels for an integer model: svt_input_t in model.h); SCORES
 * receives N * SVT_NUM_CLASSES scores (float32, or int32: svt_score_t).
 */
#include <stdio.h>
#include <stdlib.h>

#include "model.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s IMAGES SCORES\n", argv[0]);
        return 2;
    }
    FILE *in = fopen(argv[1], "rb");
    FILE *out = fopen(argv[2], "wb");
    if (in == NULL || out == NULL) {
        fprintf(stderr, "svt_host: cannot open %s\n", in == NULL ? argv[1] : argv[2]);
        return 2;
    }
    static svt_input_t image[SVT_INPUT_SIZE];
    svt_score_t scores[SVT_NUM_CLASSES];
    unsigned long count = 0;
    while (fread(image, sizeof image[0], SVT_INPUT_SIZE, in) == SVT_INPUT_SIZE) {
        svt_model_run(image, scores);
        if (fwrite(scores, sizeof scores[0], SVT_NUM_CLASSES, out) != SVT_NUM_CLASSES) {
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
