"""``python -m lte.test`` / ``lte-test``: score a checkpoint on test sets at many scales, as the papers do.

Examples:
    python -m lte.test ckpt=rdn-lte.pth testset=set5 scales=[2,3,4,6,8,12]
    python -m lte.test ckpt=rdn-lte.pth 'testsets=[set5,set14,b100,urban100]' results_file=res/rdn-lte.json
    python -m lte.test ckpt=last.ckpt testset=folder testset.hr_dir=my_photos testset.protocol=div2k
    python -m lte.test -m ckpt=a.pth,b.pth testset=set5,div2k results_file=res/all.json   # a sweep
    python -m lte.test baseline=bicubic testset=set5 results_file=res/all.json   # the bicubic row

The options and their defaults are ``conf/test.yaml``. Every option is checked before the checkpoint
is loaded or an image is scored; records are merged into the results file as they finish, a table is
printed, and with ``logger=wandb`` the run is logged to W&B (``scale`` as the step metric, so W&B
draws PSNR against scale across runs itself; see ``docs/wandb.md``). A tqdm bar per test set and
scale shows images done and the ETA when stderr is a terminal (``progress=true/false`` forces it).
The work itself is :func:`lte.evaluation.run.run_test`; the protocol is :mod:`lte.evaluation`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from lte.errors import exit_on_user_error


@hydra.main(version_base=None, config_path="../conf", config_name="test")
@exit_on_user_error
def _hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from lte.evaluation.run import run_test

    run_test(cfg, Path(HydraConfig.get().runtime.output_dir))


@exit_on_user_error
def main() -> None:
    """Entry point of ``python -m lte.test`` / ``lte-test``.

    The command line is checked before Hydra runs it (:mod:`lte.cli.overrides`): an unknown key or
    test set is one ``error: ...`` line and exit 2, as every other mistake.
    """
    from lte.cli.overrides import check_command

    check_command(sys.argv[1:], config_name="test", prog="python -m lte.test")
    _hydra_main()


if __name__ == "__main__":
    main()
