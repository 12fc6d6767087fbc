/*
 * Test harness for the integer kernels (tests/test_quant.py): reads one case from stdin,
 * runs one kernel, writes its output to stdout. Little-endian uint32/int32 throughout.
 *
 *   lif: T, N, decay_shift, threshold[N], current[N][T]     -> train[N] (uint32)
 *   ssa: T, tokens, heads, head_dim, frac_bits, threshold[C],
 *        q, k, v (packed spike trains, tokens*C*T bits each) -> out (packed spike trains)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svt_kernels.h"

static uint32_t read_u32(void)
{
    uint32_t v;
    if (fread(&v, sizeof v, 1, stdin) != 1) {
        fprintf(stderr, "harness: short input\n");
        exit(2);
    }
    return v;
}

static void *read_bytes(size_t n)
{
    uint8_t *p = calloc(n + 8u, 1);
    if (p == NULL || fread(p, 1, n, stdin) != n) {
        fprintf(stderr, "harness: short input\n");
        exit(2);
    }
    return p;
}

static int run_lif(void)
{
    uint32_t T = read_u32(), n = read_u32(), shift = read_u32();
    int32_t *threshold = read_bytes(n * sizeof(int32_t));
    int32_t *current = read_bytes((size_t)n * T * sizeof(int32_t));
    for (uint32_t i = 0; i < n; ++i) {
        uint32_t train = svt_neuron_train_q(current + i * T, 1, 1, 1, 0, threshold[i], shift, T);
        fwrite(&train, sizeof train, 1, stdout);
    }
    return 0;
}

static int run_ssa(void)
{
    uint32_t T = read_u32(), tokens = read_u32(), heads = read_u32(), head_dim = read_u32();
    uint32_t frac_bits = read_u32();
    uint32_t C = heads * head_dim, bytes = (tokens * C * T + 7u) / 8u;
    int32_t *threshold = read_bytes(C * sizeof(int32_t));
    uint8_t *q = read_bytes(bytes), *k = read_bytes(bytes), *v = read_bytes(bytes);
    uint32_t kv_bytes = tokens <= 255u ? 1u : 2u;
    svt_ssa_q_t ssa = {tokens, heads, head_dim, kv_bytes, frac_bits};
    svt_lif_q_t lif = {threshold, 1u};
    uint8_t *out = calloc(bytes + 8u, 1);
    void *kv = calloc((size_t)T * C * head_dim * kv_bytes, 1);
    int32_t *acc = calloc((size_t)T * C, sizeof(int32_t));
    if (out == NULL || kv == NULL || acc == NULL) {
        return 2;
    }
    svt_ssa_lif_q(q, k, v, &ssa, T, &lif, out, kv, acc);
    fwrite(out, 1, bytes, stdout);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "lif") == 0) {
        return run_lif();
    }
    if (argc == 2 && strcmp(argv[1], "ssa") == 0) {
        return run_ssa();
    }
    fprintf(stderr, "usage: %s lif|ssa < case\n", argv[0]);
    return 2;
}
