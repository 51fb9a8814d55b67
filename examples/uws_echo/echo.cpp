// uWebSockets echo server used as a comparison point by airws' benchmark
// (examples/bench.rs). Plain TCP (no TLS), no permessage-deflate, one thread.
//
// Usage: uws_echo PORT
// Prints "listening on PORT" to stdout once the socket is bound, exits 1 if
// it cannot listen. Every received message is sent back with the same opcode.

#include "App.h"

#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

struct PerSocketData {};

constexpr unsigned int MiB = 1024 * 1024;

}  // namespace

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    char *end = nullptr;
    long port = std::strtol(argv[1], &end, 10);
    if (end == argv[1] || *end != '\0' || port < 1 || port > 65535) {
        std::fprintf(stderr, "invalid port: %s\n", argv[1]);
        return 2;
    }

    bool listening = false;

    uWS::App()
        .ws<PerSocketData>("/*", {
            .compression = uWS::DISABLED,
            // Largest message we accept (benchmark sends up to 1 MiB).
            .maxPayloadLength = 64 * MiB,
            // 0 disables the idle timeout (and with it the automatic pings).
            .idleTimeout = 0,
            // Room for many 1 MiB echoes in flight before anything is dropped.
            .maxBackpressure = 64 * MiB,
            .closeOnBackpressureLimit = false,
            .resetIdleTimeoutOnSend = false,
            .sendPingsAutomatically = false,
            .message = [](auto *ws, std::string_view message, uWS::OpCode opCode) {
                ws->send(message, opCode);
            },
            .dropped = [](auto * /*ws*/, std::string_view message, uWS::OpCode /*opCode*/) {
                // Should never happen with the limits above; make it visible if it does.
                std::fprintf(stderr, "uws_echo: dropped a %zu-byte echo (backpressure limit)\n",
                             message.size());
            },
        })
        // Exclusive port: without it uSockets sets SO_REUSEPORT and a second
        // server on a busy port would "succeed" instead of failing.
        .listen("127.0.0.1", static_cast<int>(port), LIBUS_LISTEN_EXCLUSIVE_PORT, [&](auto *listenSocket) {
            if (listenSocket) {
                listening = true;
                std::printf("listening on %ld\n", port);
                std::fflush(stdout);
            }
        })
        .run();

    if (!listening) {
        std::fprintf(stderr, "uws_echo: failed to listen on 127.0.0.1:%ld\n", port);
        return 1;
    }
    return 0;
}
