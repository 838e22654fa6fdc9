"""examples/pretrain_32b.py with one injected fault, for tests/training/test_restart.py:
rank KILL_RANK sends itself SIGKILL at the start of optimizer step KILL_AT_STEP (0-based),
once: KILL_MARKER is created first, so the attempt torchrun restarts runs through."""
import importlib.util
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from megamed.training import trainer  # noqa: E402

KILL_STEP, KILL_RANK = int(os.environ["KILL_AT_STEP"]), int(os.environ["KILL_RANK"])
MARKER = Path(os.environ["KILL_MARKER"])
_train_step = trainer.train_step


def train_step(runner, *args, **kwargs):
    if (runner.forward_step.step == KILL_STEP and int(os.environ["RANK"]) == KILL_RANK
            and not MARKER.exists()):
        MARKER.write_text("killed\n")
        os.kill(os.getpid(), signal.SIGKILL)
    return _train_step(runner, *args, **kwargs)


trainer.train_step = train_step  # _pretrain looks it up in the module at every step

if __name__ == "__main__":
    spec = importlib.util.spec_from_file_location("pretrain_32b",
                                                  ROOT / "examples" / "pretrain_32b.py")
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    sys.exit(entry.main())
