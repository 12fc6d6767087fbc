/*
 * Stand-in for the generated board_config.h (firmware/board_config.h.j2) in the libFuzzer
 * build of the firmware's request handling (fuzz_protocol.c): an emulated build, so that
 * EXIT is served as on QEMU.
 */
#ifndef SVT_BOARD_CONFIG_H
#define SVT_BOARD_CONFIG_H

#define SVT_EMULATED 1
#define SVT_BOARD_NAME "fuzz"
#define SVT_CORE_CLOCK_HZ 25000000u
#define SVT_COUNTER_KIND 2u /* SVT_COUNTER_QEMU_SYSTICK */

#endif /* SVT_BOARD_CONFIG_H */
