// The daemon's HTTP API (docs/api.md), as the page uses it: every call carries the
// bearer token; an error answer becomes an ApiProblem with the problem+json fields.

export class ApiProblem extends Error {
  constructor(status, problem) {
    super(problem?.detail || `HTTP ${status}`);
    this.status = status;
    this.code = problem?.code || '';
    this.detail = problem?.detail || '';
    this.reasons = problem?.reasons || [];
    this.problem = problem;
  }
}

export class Api {
  constructor(token) {
    this.token = token;
    this.onUnauthorized = () => {};
  }

  headers(extra = {}) {
    return { Authorization: `Bearer ${this.token}`, Accept: 'application/json', ...extra };
  }

  async call(method, path, { body, headers = {}, signal } = {}) {
    const init = { method, headers: this.headers(headers), signal, cache: 'no-store' };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers['Content-Type'] = 'application/json';
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new ApiProblem(0, { code: 'network', detail: 'The daemon cannot be reached; check the connection and try again.' });
    }
    const text = await res.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { json = null; }
    if (!res.ok) {
      if (res.status === 401) this.onUnauthorized();
      throw new ApiProblem(res.status, json);
    }
    return { json, etag: res.headers.get('ETag') };
  }

  get(path, opts) { return this.call('GET', path, opts).then((r) => r.json); }

  me() { return this.get('/v1/me'); }

  /** One page of the Ongoing record conversations view. */
  conversations(filters, limit, cursor) {
    const q = new URLSearchParams();
    for (const s of filters.status) q.append('status', s);
    for (const k of ['queue', 'representative', 'entity', 'intent_based']) if (filters[k]) q.set(k, filters[k]);
    q.set('limit', String(limit));
    if (cursor) q.set('cursor', cursor);
    return this.get(`/v1/conversations?${q}`);
  }

  conversation(id) { return this.get(`/v1/conversations/${encodeURIComponent(id)}`); }
  history(id) { return this.get(`/v1/conversations/${encodeURIComponent(id)}/history`); }
  rules() { return this.get('/v1/rules'); }
  stats() { return this.get('/v1/stats'); }

  /** Every page of a directory list (`representatives` or `queues`). */
  async all(kind) {
    const items = [];
    let cursor = null;
    do {
      const q = new URLSearchParams({ limit: '1000' });
      if (cursor) q.set('cursor', cursor);
      const page = await this.get(`/v1/${kind}?${q}`);
      items.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor);
    return items;
  }

  representative(id) { return this.get(`/v1/representatives/${encodeURIComponent(id)}`); }
  queue(id) { return this.get(`/v1/queues/${encodeURIComponent(id)}`); }

  /** The Assign/Transfer dialog's list: `params` are the filters (arrays repeat). */
  candidates(id, action, target, params, limit, explain) {
    const q = new URLSearchParams({ action, target });
    for (const [k, v] of Object.entries(params)) {
      for (const one of Array.isArray(v) ? v : [v]) if (one !== '' && one !== undefined) q.append(k, one);
    }
    q.set('limit', String(limit));
    if (explain) q.set('explain', 'true');
    return this.get(`/v1/conversations/${encodeURIComponent(id)}/candidates?${q}`);
  }

  /** A single action, applied only to the version the supervisor saw (If-Match). */
  act(id, action, body, version) {
    return this.call('POST', `/v1/conversations/${encodeURIComponent(id)}/${action}`, {
      body, headers: { 'If-Match': `"${version}"` },
    }).then((r) => r.json);
  }

  bulk(body) { return this.call('POST', '/v1/conversations/bulk', { body }).then((r) => r.json); }

  distribute(queue, max, dryRun) {
    return this.call('POST', `/v1/queues/${encodeURIComponent(queue)}/distribute`, { body: { max, dry_run: dryRun } })
      .then((r) => r.json);
  }

  /** The feed position to follow the stream from: the `head` the daemon adds to a feed
   *  page, or (from a daemon without it) the end of the feed, paged to. */
  async feedHead() {
    const first = await this.get('/v1/changes?limit=1');
    if (typeof first.head === 'number') return first.head;
    let after = 0;
    for (;;) {
      const page = await this.get(`/v1/changes?after=${after}&limit=1000`);
      if (page.items.length < 1000) return page.next_after;
      after = page.next_after;
    }
  }
}
