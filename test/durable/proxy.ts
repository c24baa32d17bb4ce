/**
 * A TCP proxy on 127.0.0.1 in front of a redis-server, for tests that need a connection to break
 * at a chosen moment: a command that never reaches Redis, or one that Redis runs but whose answer
 * never comes back. Its connections pass bytes both ways until told otherwise.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';

/**
 * `pass`: both ways. `dropRequests`: what clients send is thrown away (Redis never sees it).
 * `dropReplies`: what Redis answers is thrown away (it runs the commands; nobody hears back).
 * `refuse`: new connections are closed at once (Redis looks unreachable).
 *
 * A connection that lost bytes (dropped either way) breaks at the next change of mode, whatever
 * the new one: a TCP connection never loses bytes and goes on (passing again, its client would
 * read the answer of one command as another's), it breaks sooner or later.
 */
export type ProxyMode = 'pass' | 'dropRequests' | 'dropReplies' | 'refuse';

export interface RedisProxy {
  readonly port: number;
  readonly connection: { host: string; port: number };
  /** Applies to the connections open now (breaking those that lost bytes) and to those made later. */
  mode: ProxyMode;
  /** What clients sent while their requests were dropped (latin1): where a test sees a command went out. */
  dropped: string;
  /**
   * Looks at what a client sends before it passes (given the chunk and everything that connection
   * sent so far, latin1): `cut` closes that connection instead, the chunk unsent.
   */
  onRequest: ((chunk: string, sent: string) => 'pass' | 'cut') | undefined;
  /** Client connections open now. */
  readonly connections: number;
  /** Connections refused so far (`refuse`): how a test sees its clients tried to reconnect. */
  readonly refused: number;
  /** Closes every connection open now (the clients see their connection break, and reconnect). */
  cut(): void;
  close(): Promise<void>;
}

export async function startProxy(targetPort: number): Promise<RedisProxy> {
  const sockets = new Set<Socket>();
  const clients = new Set<Socket>();
  /** Client connections that lost bytes in the current mode. */
  const lossy = new Set<Socket>();
  let mode: ProxyMode = 'pass';
  let refused = 0;
  const track = (socket: Socket): void => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
  };
  const proxy: RedisProxy = {
    port: 0,
    connection: { host: '127.0.0.1', port: 0 },
    get mode() {
      return mode;
    },
    set mode(next: ProxyMode) {
      mode = next;
      for (const client of lossy) client.destroy();
      lossy.clear();
    },
    dropped: '',
    onRequest: undefined,
    get connections() {
      return clients.size;
    },
    get refused() {
      return refused;
    },
    cut() {
      for (const socket of sockets) socket.destroy();
    },
    close: () => new Promise<void>((resolve) => {
      proxy.cut();
      server.close(() => resolve());
    }),
  };
  const server: Server = createServer((client) => {
    if (mode === 'refuse') {
      refused++;
      client.destroy();
      return;
    }
    const upstream = createConnection({ host: '127.0.0.1', port: targetPort });
    track(client);
    track(upstream);
    clients.add(client);
    client.on('close', () => {
      clients.delete(client);
      lossy.delete(client);
    });
    let sent = '';
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.on('data', (chunk) => {
      sent += chunk.toString('latin1');
      if (proxy.onRequest?.(chunk.toString('latin1'), sent) === 'cut') client.destroy();
      else if (mode === 'dropRequests') {
        proxy.dropped += chunk.toString('latin1');
        lossy.add(client);
      } else upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (mode !== 'dropReplies') client.write(chunk);
      else lossy.add(client);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return Object.assign(proxy, { port, connection: { host: '127.0.0.1', port } });
}
