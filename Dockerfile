# megamed training image: NGC PyTorch (CUDA, NCCL, cuDNN, Triton, a matching torch build),
# megamed with its C++ DICOM extension, and a non-root user.
#   docker build -t registry.hospital.local/megamed:latest .
#   docker run --gpus all --ipc=host registry.hospital.local/megamed:latest \
#       torchrun --nproc_per_node 8 examples/pretrain_32b.py --profile poc-7b
# Kubernetes manifests using this image: launch/k8s/.
FROM nvcr.io/nvidia/pytorch:25.01-py3

# zlib headers: the DICOM extension decodes the deflated transfer syntax.
RUN apt-get update && apt-get install -y --no-install-recommends zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/megamed
COPY . .
# --no-deps keeps the image's own CUDA torch; the rest of setup.py's requirements follow.
RUN python -m pip install --no-cache-dir pybind11 \
    && python -m pip install --no-cache-dir --no-build-isolation --no-deps -e . \
    && python -m pip install --no-cache-dir numpy pyyaml scipy prometheus_client \
        nvidia-ml-py tensorboard matplotlib "psycopg[binary]" \
    && python -c "import megamed._dicom, megamed.kernels, megamed.monitoring"

RUN groupadd --gid 1000 megamed && useradd --uid 1000 --gid 1000 --create-home megamed \
    && chown -R megamed:megamed /opt/megamed
USER megamed
# Prometheus: rank r serves on 9400 + local rank with --metrics-port 9400.
EXPOSE 9400-9407
CMD ["python", "tools/health_check.py"]
