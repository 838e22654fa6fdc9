"""examples/pretrain_32b.py's `main`, loaded by path (examples/ is not a package): the
entry point in this process, or in processes forked by run_distributed."""
import importlib.util
from pathlib import Path

ENTRY = Path(__file__).resolve().parents[1] / "examples" / "pretrain_32b.py"


def main(argv=None) -> int:
    spec = importlib.util.spec_from_file_location("pretrain_32b", ENTRY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)
