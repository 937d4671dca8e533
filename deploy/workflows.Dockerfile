# The workflows service image for deploy/kubernetes/workflows.yaml. Build from the repository root:
#   docker build -f deploy/workflows.Dockerfile -t <registry>/talis-workflows:<version> .
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p talis-workflows

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/talis-workflows /usr/local/bin/talis-workflows
EXPOSE 9080 9081
ENV WORKFLOWS_LISTEN=0.0.0.0:9080 TALIS_METRICS_LISTEN=0.0.0.0:9081
ENTRYPOINT ["/usr/local/bin/talis-workflows"]
