// Follows GET /v1/changes/stream. EventSource cannot send an Authorization header, so
// the stream is read with fetch() and parsed here (the text/event-stream format: `id:`,
// `event:`, `data:` lines, a blank line ends an event, `:` starts a comment). After a
// lost connection it reconnects with backoff and resumes after the last position it
// received (`Last-Event-ID`).

const IDLE_LIMIT_MS = 45_000; // the daemon sends a comment at least every 15 s

export class LiveFeed {
  /**
   * @param {import('./api.js').Api} api
   * @param {number} after the position the page's state is current to
   * @param {{onItem: (item) => void, onState: (state: 'live'|'reconnecting'|'off', detail?: string) => void}} handlers
   */
  constructor(api, after, handlers) {
    this.api = api;
    this.last = after;
    this.handlers = handlers;
    this.stopped = false;
    this.failures = 0;
    this.controller = null;
    this.timer = null;
  }

  start() { this.connect(); }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.controller?.abort();
    this.handlers.onState('off');
  }

  /** Drops the connection as if the network had (for the reconnect path). */
  drop() { this.controller?.abort(new DOMException('dropped', 'AbortError')); }

  async connect() {
    if (this.stopped) return;
    const controller = new AbortController();
    this.controller = controller;
    let idle = null;
    const arm = () => {
      clearTimeout(idle);
      idle = setTimeout(() => controller.abort(), IDLE_LIMIT_MS);
    };
    try {
      const headers = this.api.headers({ Accept: 'text/event-stream' });
      // First connection: from the position the page loaded at; after that, as a
      // browser's EventSource would, from the last event received.
      let url = '/v1/changes/stream';
      if (this.resumed) headers['Last-Event-ID'] = String(this.last);
      else url += `?after=${this.last}`;
      const res = await fetch(url, { headers, signal: controller.signal, cache: 'no-store' });
      if (res.status === 401) { this.api.onUnauthorized(); return; }
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      this.resumed = true;
      this.failures = 0;
      this.handlers.onState('live');
      arm();
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      let event = { id: null, type: 'message', data: [] };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        arm();
        buffer += value;
        const lines = buffer.split(/\r\n|\r|\n/);
        buffer = lines.pop(); // an incomplete line waits for the next chunk
        for (const line of lines) {
          if (line === '') {
            if (event.data.length) this.dispatch(event);
            event = { id: null, type: 'message', data: [] };
            continue;
          }
          if (line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let val = colon < 0 ? '' : line.slice(colon + 1);
          if (val.startsWith(' ')) val = val.slice(1);
          if (field === 'data') event.data.push(val);
          else if (field === 'event') event.type = val;
          else if (field === 'id') event.id = val;
        }
      }
      throw new Error('the stream ended');
    } catch (e) {
      if (this.stopped) return;
      this.failures += 1;
      // 0.5 s, 1 s, 2 s ... up to 15 s, with jitter so many pages do not reconnect at once.
      const delay = Math.min(15_000, 500 * 2 ** (this.failures - 1)) * (0.75 + Math.random() * 0.5);
      this.handlers.onState('reconnecting', e?.message);
      this.timer = setTimeout(() => this.connect(), delay);
    } finally {
      clearTimeout(idle);
    }
  }

  dispatch(event) {
    let item;
    try { item = JSON.parse(event.data.join('\n')); } catch { return; }
    const position = Number(event.id ?? item.position);
    if (Number.isFinite(position)) {
      if (position <= this.last) return; // already seen (a resume never repeats, but be safe)
      this.last = position;
    }
    this.handlers.onItem(item);
  }
}
