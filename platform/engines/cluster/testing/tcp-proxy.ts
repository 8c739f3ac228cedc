import net from "node:net";

/**
 * Test helper: a loopback TCP forwarder whose listening side can be switched off (refusing
 * connections and cutting live ones) and on again at the same port, to simulate a backend that
 * is down at start, goes away, and comes back, without restarting the real server.
 */
export class TcpProxy {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  private accepted = 0;

  constructor(
    readonly port: number,
    private readonly target: { host: string; port: number },
  ) {}

  /** Connections accepted so far (tests count the connections a client opens). */
  get connectionsAccepted(): number {
    return this.accepted;
  }

  async up(): Promise<void> {
    if (this.server) return;
    const server = net.createServer((client) => {
      this.accepted++;
      const upstream = net.connect(this.target.port, this.target.host);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on("close", () => this.sockets.delete(s));
        s.on("error", () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, "127.0.0.1", () => resolve());
    });
    this.server = server;
  }

  /**
   * Stops forwarding on every live connection without closing it (a peer that hangs or a network
   * that drops packets): neither end learns anything until its own keep-alive gives up.
   */
  stall(): void {
    for (const sock of this.sockets) {
      sock.unpipe();
      sock.pause();
    }
  }

  /** Stops listening and cuts every live connection. */
  async down(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    for (const sock of this.sockets) sock.destroy();
    this.sockets.clear();
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}
