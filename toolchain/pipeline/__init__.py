"""The pipeline: one function per stage, typed options in, typed results out.

The command line (``cli*.py``) only parses arguments into these options and prints the
results; nothing here reads an argparse namespace. ``deploy`` runs the stages in order
through the stage cache (``out/.stages``). Between stages, facts about a generated project
travel in its manifest (``manifest.json``: ``ModelFacts`` from code generation,
``FirmwareFacts`` from the firmware build), never in regexes over generated files.

stage        module                    reads                               writes
load         pipeline.inputs           --model-def/--weights, --data       (memory)
baseline     pipeline.evaluation       model, test split                   .cache/test-*.json
prune        pipeline.pruning          model, train/val split, board       pruned_model.pt,
                                                                           prune_plan.json,
                                                                           .cache/ profiles
generate     pipeline.generation       pruned model, board                 firmware_project/
                                                                           (C, firmware/,
                                                                           manifest.json)
host check   pipeline.host_check       project + manifest, test split      svt_host binary
firmware     pipeline.firmware_build   project + manifest, board           firmware/build/,
                                                                           manifest firmware,
                                                                           svt_BOARD.elf/...
device       pipeline.on_device        project + manifest, QEMU or port    firmware/build-qemu/
report       pipeline.reporting        stage results, manifest             report.json/.md, PNGs
deploy       pipeline.deploy           DeployOptions                       all of the above
"""

from .deploy import DeployOptions, DeployResult, deploy
from .inputs import ModelInputs, load_inputs

__all__ = ["DeployOptions", "DeployResult", "ModelInputs", "deploy", "load_inputs"]
