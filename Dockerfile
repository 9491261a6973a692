# syntax=docker/dockerfile:1
#
# Envoy with the pub-sub plugin:
#   docker build -t envoy-pubsub:dev .
#   docker run --rm -p 8080:8080 envoy-pubsub:dev        # expects kafka:9092 and echo:8080, see envoy.yaml
#
# Stage 1 builds the plugin (.so). Its glibc must not be newer than the runtime image's:
# Envoy's contrib image is Ubuntu 22.04 (glibc 2.35), golang:*-bookworm has glibc 2.36 but
# the .so only needs GLIBC_2.34 symbols. The check below fails the build if that changes.

ARG GO_IMAGE=golang:1.26-bookworm
ARG ENVOY_IMAGE=envoyproxy/envoy:contrib-v1.39.1

FROM ${GO_IMAGE} AS build
# glibc of the runtime image: the highest GLIBC_x.y symbol version the .so may need.
ARG MAX_GLIBC=2.35
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    OUT=/out/envoy-pubsub.so MAX_GLIBC=${MAX_GLIBC} bash ./build.sh
# Independent of build.sh: refuse a library the runtime's glibc could not load.
RUN needed="$(objdump -T /out/envoy-pubsub.so | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/^GLIBC_//' | sort -uV | tail -n 1)" \
 && test -n "$needed" \
 && echo "envoy-pubsub.so needs GLIBC_${needed}; runtime has GLIBC_${MAX_GLIBC}" \
 && if [ "$(printf '%s\n%s\n' "$needed" "$MAX_GLIBC" | sort -V | tail -n 1)" != "$MAX_GLIBC" ]; then \
      echo "envoy-pubsub.so needs GLIBC_${needed}, newer than the runtime's GLIBC_${MAX_GLIBC}: build on an older glibc" >&2; \
      exit 1; \
    fi

FROM ${ENVOY_IMAGE}
# The image's entrypoint runs Envoy as user "envoy" (uid 101); the plugin's session server
# binds its unix socket (plugin_config listener) in this directory.
RUN mkdir -p /var/run/envoy-pubsub && chown envoy:envoy /var/run/envoy-pubsub
COPY --from=build /out/envoy-pubsub.so /etc/envoy/envoy-pubsub.so
COPY envoy.yaml /etc/envoy/envoy.yaml
EXPOSE 8080
# Envoy's worker threads and Go's processors, set together (docs/envoy-deployment.md, "CPU and
# memory"): without --concurrency Envoy starts a worker per hardware thread of the host, and
# every worker's calls into the filter compete with the sessions for Go's processors. Override
# both for a bigger container: docker run -e GOMAXPROCS=4 IMAGE envoy -c /etc/envoy/envoy.yaml --concurrency 4
ENV GOMAXPROCS=2
# Inherited: ENTRYPOINT /docker-entrypoint.sh
CMD ["envoy", "-c", "/etc/envoy/envoy.yaml", "--concurrency", "2"]
