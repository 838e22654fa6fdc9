"""benchmarks/deid_same_spans.py, the identity check for find_phi: it must see a difference
where there is one, and none between a checkout and itself."""
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import deid_same_spans as same  # noqa: E402


def test_a_changed_detector_is_reported_and_an_unchanged_one_is_not(tmp_path):
    shutil.copytree(os.path.join(ROOT, "megamed"), tmp_path / "megamed",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    text_py = tmp_path / "megamed" / "data" / "deid" / "text.py"
    source = text_py.read_text()
    assert "    return _resolve(" in source
    # the copy loses every span's last character in texts that mention "Dr."
    text_py.write_text(source.replace(
        "    return _resolve(",
        "    return [(s, e - ('Dr.' in text), c) for s, e, c in _resolve(").replace(
        "names.find_names(text, blocked))", "names.find_names(text, blocked))]"))
    texts = same.base_inputs()[:40]
    texts += same.mutations(texts, 20)
    ours, again = same.spans_of(ROOT, texts), same.spans_of(ROOT, texts)
    theirs = same.spans_of(str(tmp_path), texts)
    assert ours == again
    assert any(ours)
    differ = [t for t, a, b in zip(texts, ours, theirs) if a != b]
    assert differ and all("Dr." in t for t in differ)
    assert all(a == b for t, a, b in zip(texts, ours, theirs) if "Dr." not in t)


def test_bad_baseline_is_refused_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "deid_same_spans.py"),
                          "--baseline", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 2 and "no megamed/data/deid/text.py" in out.stderr
    assert "Traceback" not in out.stderr
