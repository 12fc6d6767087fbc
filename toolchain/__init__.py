"""svt-deploy: prune a spiking vision transformer to fit a microcontroller, generate C,
build the firmware and check it on the device."""

import logging

# torch warns at run time that Triton (a GPU compiler) is missing; on the CPU-only install
# we pin that is expected and would only bury our own one-line messages. A filter, not a
# level: torch resets its loggers' levels when it sets up logging.
logging.getLogger("torch._library.triton").addFilter(
    lambda record: "Triton not available" not in record.getMessage())
