# Production image: a release build of `wharf` on a slim base.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin wharf

FROM debian:bookworm-slim
RUN useradd --system --home /var/lib/wharf --create-home wharf
COPY --from=build /src/target/release/wharf /usr/local/bin/wharf
USER wharf
WORKDIR /var/lib/wharf
# The allocator (mimalloc) commits the memory it reserves page by page, as the system's does:
# read at start-up, so only the environment can set it (see README, Running it).
ENV WHARF_LISTEN=0.0.0.0:8080 WHARF_DATA_DIR=/var/lib/wharf/data MIMALLOC_ARENA_EAGER_COMMIT=0
EXPOSE 8080
ENTRYPOINT ["wharf"]
CMD ["serve"]
