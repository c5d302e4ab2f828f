# The pstrain image that docs/kubernetes.md's TFJob names (pstrain:0.1):
#   docker build -t pstrain:0.1 .
# Build stage: Debian 12 with the project's own set-up (scripts/setup.sh installs the
# toolchain, the libraries and the data set from Debian's archive), then a Release build of the
# binary alone (no tests, no benchmarks). Runtime stage: Debian 12 with the shared libraries
# pstrain links and the Fashion-MNIST package, run as a non-root user.
FROM debian:12 AS build
WORKDIR /src
COPY . .
RUN bash scripts/setup.sh \
    && cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DPSTRAIN_CUDA=OFF \
         -DPSTRAIN_BUILD_TESTS=OFF -DPSTRAIN_BUILD_BENCH=OFF \
    && cmake --build /build -j"$(nproc)" --target pstrain \
    && install -m 0755 /build/cli/pstrain /usr/local/bin/pstrain

FROM debian:12-slim
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends \
         libprotobuf32 libzmq5 zlib1g dataset-fashion-mnist \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 --shell /usr/sbin/nologin pstrain
COPY --from=build /usr/local/bin/pstrain /usr/local/bin/pstrain
USER pstrain
WORKDIR /home/pstrain
# 2222: the port Kubeflow's TFJob gives every task in TF_CONFIG.
EXPOSE 2222
ENTRYPOINT ["pstrain"]
