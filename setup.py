"""Installs `megamed`, maps the top-level `kernels/` folder to `megamed.kernels`, and builds
the C++ DICOM extension from `csrc/` (pybind11, no torch dependency)."""
import glob
import sys

from setuptools import find_packages, setup


def dicom_extension():
    sources = sorted(glob.glob("csrc/*.cpp"))
    if not sources:
        return [], {}
    try:
        from pybind11.setup_helpers import Pybind11Extension, build_ext
    except ImportError:
        print("megamed: pybind11 not importable; building without the C++ DICOM extension "
              "(megamed.data.dicom will raise when asked to use it)", file=sys.stderr)
        return [], {}
    ext = Pybind11Extension("megamed._dicom", sources, cxx_std=17,
                            depends=sorted(glob.glob("csrc/*.h")),  # rebuild when a header changes
                            # -ffp-contract=off: no fused multiply-add, so the rescale rounds as numpy's does
                            extra_compile_args=["-O3", "-pthread", "-ffp-contract=off"], extra_link_args=["-pthread"],
                            libraries=["z"])
    return [ext], {"build_ext": build_ext}


ext_modules, cmdclass = dicom_extension()

setup(
    name="megamed",
    version="0.1.0",
    description="Megatron-style pretraining for a multimodal medical LLM (text, DICOM, waveforms)",
    python_requires=">=3.10",
    packages=find_packages(include=["megamed", "megamed.*"]) + ["megamed.kernels"],
    package_dir={"megamed.kernels": "kernels"},
    package_data={"megamed": ["../configs/*.yaml", "data/deid/lexicon/*"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    install_requires=["torch>=2.4", "numpy", "pyyaml", "scipy", "pydicom>=3", "tqdm",
                      "webdataset>=0.2.86", "sentencepiece>=0.2",
                      # tools/export_hf.py, tools/import_hf.py: Hugging Face weights
                      "safetensors>=0.4",
                      # monitoring: Prometheus exporter, NVML telemetry, PNG plots
                      "prometheus_client>=0.20", "nvidia-ml-py", "matplotlib"],
    extras_require={
        # --tensorboard DIR, --audit-db postgresql://... (psycopg 3 with its own libpq)
        "ops": ["tensorboard", "psycopg[binary]>=3.1"],
        "test": ["pytest", "pytest-timeout", "pydicom>=3", "pydicom-data", "scipy", "triton>=3.8",
                 "tensorboard", "psycopg[binary]>=3.1",
                 # tests/tools/test_hf_exchange.py loads the export with LlamaForCausalLM
                 "transformers", "safetensors>=0.4"],
        # Compressed DICOM that csrc/ does not decode itself: JPEG baseline / extended
        # (libjpeg), JPEG-LS (CharLS), JPEG 2000 and HTJ2K (OpenJPEG). README "Compressed DICOM".
        "codecs": ["pylibjpeg>=2.0", "pylibjpeg-libjpeg>=2.1", "pylibjpeg-openjpeg>=2.0",
                   "pyjpegls>=1.4"],
    },
)
