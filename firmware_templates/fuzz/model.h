/*
 * Stand-in for the generated model.h (model/model.h.j2) in the libFuzzer build
 * (fuzz_protocol.c): a 16-float input keeps an INFER frame short (64 payload bytes), so
 * mutated inputs reach it and the receive buffer's limit; svt_model_run is the harness's.
 */
#ifndef SVT_MODEL_H
#define SVT_MODEL_H

#include <stdint.h>

#define SVT_MODEL_HASH "fuzz-model"
#define SVT_INPUT_SIZE 16u
#define SVT_NUM_CLASSES 10u
#define SVT_TIMESTEPS 4u
#define SVT_NUM_STEPS 3u
#define SVT_WEIGHT_BYTES 0u
#define SVT_ARENA_BYTES 0u
#define SVT_INTEGER 0
typedef float svt_input_t;
typedef float svt_score_t;

void svt_model_run(const svt_input_t *image, svt_score_t *scores);

#endif /* SVT_MODEL_H */
