# Parley container image.
#
#   docker build -t parley:local .
#   docker run -p 8443:8443 -v parley-data:/data parley:local
#
# The final image is FROM scratch: the static parley binary, CA certificates,
# a passwd/group entry for the unprivileged user parley (65532) and /data.

# --- build ------------------------------------------------------------------
FROM golang:1.26-bookworm AS build

ENV GOTOOLCHAIN=go1.27.3 \
    GOPROXY=https://proxy.golang.org \
    CGO_ENABLED=0

WORKDIR /src

# Dependencies (and the pinned Go toolchain) in their own layer, rebuilt only
# when go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download && go version

COPY . .
RUN go build -trimpath -ldflags="-s -w" -o /out/parley ./cmd/parley

# Runtime user, and a data directory it owns.
RUN mkdir -p /out/data \
 && chown 65532:65532 /out/data \
 && chmod 0700 /out/data \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nparley:x:65532:65532:parley:/data:/sbin/nologin\n' >/out/passwd \
 && printf 'root:x:0:\nparley:x:65532:\n' >/out/group

# --- runtime ----------------------------------------------------------------
FROM scratch

COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/passwd /etc/passwd
COPY --from=build /out/group /etc/group
COPY --from=build /out/parley /parley
COPY --from=build --chown=65532:65532 /out/data /data

USER 65532:65532

ENV PARLEY_DATA_DIR=/data \
    PARLEY_LISTEN=0.0.0.0:8443

# HTTPS; TURN over UDP, TCP and TLS. The TURN relay ports (UDP,
# PARLEY_TURN_RELAY_PORTS, default 49152-65535) are published explicitly with
# a range of your choice, as compose.yaml does.
EXPOSE 8443/tcp 3478/udp 3478/tcp 5349/tcp
VOLUME /data

HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
    CMD ["/parley", "healthcheck"]

ENTRYPOINT ["/parley"]
CMD ["serve"]
