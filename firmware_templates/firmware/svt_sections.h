/*
 * Included ahead of every source file of a firmware build (-include svt_sections.h):
 * places the model's weights and arena in the sections the linker script assigns to
 * flash and to the chosen SRAM region. The host build leaves both macros empty.
 */
#ifndef SVT_SECTIONS_H
#define SVT_SECTIONS_H

#define SVT_WEIGHTS_SECTION __attribute__((section(".svt_weights")))
#define SVT_ARENA_SECTION __attribute__((section(".svt_arena")))

#endif /* SVT_SECTIONS_H */
