# The e2e tests' workloads (not the product): llama.cpp's own llama-server with Gemma 3 270M, as
# a team's upstream pod, and the clients an app pod runs against the relay, curl and the openai
# SDK. Built on the project's debootstrap base by scripts/install-node.sh, from a context it
# assembles (llama-server, the model and its chat template from the llama-server install):
#
#   docker build -f scripts/node/e2e.Dockerfile --build-arg BASE=chatprovider-base:bookworm \
#                --build-arg OPENAI_VERSION=... -t chatprovider-e2e:dev <context>
ARG BASE=chatprovider-base:bookworm
FROM ${BASE}
ARG OPENAI_VERSION
# libgomp1: llama-server's OpenMP runtime (its llama and ggml libraries are linked in statically)
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl libgomp1 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
RUN python -m venv /opt/client \
 && /opt/client/bin/pip install --no-cache-dir --disable-pip-version-check -q \
        "openai==${OPENAI_VERSION}" \
 && /opt/client/bin/python -c "import openai; print(openai.__version__)"
COPY llama-server /opt/llama/bin/llama-server
COPY gemma-3-270m.gguf gemma.jinja /opt/llama/
RUN /opt/llama/bin/llama-server --version
ENV PATH=/opt/client/bin:/opt/llama/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 65532:65532
