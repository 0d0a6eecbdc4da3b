# One image, two commands:
#   chatprovider run     the operator, with the relay embedded (the default command)
#   chatprovider relay   the relay alone, for a separately scaled Deployment
#
# Build:  docker build -t chatprovider-operator:dev .
# The final stage holds only the Python runtime of the base image and one virtual environment
# with the product (package `chatprovider`), runs as the numeric non-root user 65532 and works
# with a read-only root filesystem.
#
# A second target, `tools`, adds the workshop package (`chatprovider_tools`: the dev server used
# as a test upstream in pods). It is for tests only and is never the default:
#         docker build --target tools -t chatprovider-tools:dev .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: wheels of both packages, then one virtual environment per image ----------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY tools/ tools/
# The venvs have no pip of their own: the build stage's pip installs into them (--python), so
# the final images carry no installer. Byte code is compiled here, since the root filesystem is
# read-only at run time.
RUN pip wheel --no-deps --wheel-dir /wheels . ./tools \
 && python -m venv --without-pip /opt/chatprovider \
 && pip --python /opt/chatprovider/bin/python install --only-binary=:all: \
        /wheels/chatprovider_operator-*.whl \
 && /opt/chatprovider/bin/chatprovider --version \
 && python -m venv --without-pip /opt/chatprovider-tools \
 && pip --python /opt/chatprovider-tools/bin/python install --only-binary=:all: /wheels/*.whl
# Name the numeric user: getpass.getuser() (kopf's identity, when POD_ID is unset) needs an
# /etc/passwd entry for the uid it runs as.
RUN echo "chatprovider:x:65532:65532:chatprovider:/nonexistent:/usr/sbin/nologin" >> /etc/passwd \
 && echo "chatprovider:x:65532:" >> /etc/group

# ---- tools: the workshop (dev server) for test pods; not the product ----------------------------
FROM ${PYTHON_IMAGE} AS tools
COPY --from=build /etc/passwd /etc/group /etc/
COPY --from=build /opt/chatprovider-tools /opt/chatprovider-tools
ENV PATH=/opt/chatprovider-tools/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 65532:65532
ENTRYPOINT ["python", "-m", "chatprovider_tools.devserver"]

# ---- run: the base image plus the product's virtual environment, nothing else -------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="chatprovider-operator" \
      org.opencontainers.image.description="Registers OpenAI-compatible chat endpoints as ChatProvider resources and relays chat completions to them." \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /etc/passwd /etc/group /etc/
COPY --from=build /opt/chatprovider /opt/chatprovider
ENV PATH=/opt/chatprovider/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 65532:65532
# 8080: the relay (/v1, /healthz, /readyz, /metrics); 8081: the operator's liveness (/healthz)
EXPOSE 8080 8081
ENTRYPOINT ["chatprovider"]
CMD ["run"]
