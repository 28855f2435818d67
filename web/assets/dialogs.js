// The modal dialogs: confirm (release, remove), Assign/Transfer with the ranked
// candidates, bulk results and queue distribution. Each is a native <dialog> opened with
// showModal() (the rest of the page is inert), with Tab kept inside and focus given back
// to what opened it.

import { $, $$, h, STATUS_LABEL, trapFocus } from './dom.js';

const VERB = { assign: 'Assign', transfer: 'Transfer', release: 'Release', remove: 'Remove' };
const DONE = { assign: 'Assigned', transfer: 'Transferred', release: 'Released', remove: 'Removed' };
const PAGE = 10; // candidates shown at first, and added by each "More"

/**
 * Opens `dlg` modally; on close, focus returns to the opener (or `fallback()`).
 * With `watch` (conversation id -> the version the dialog was opened on), a change to
 * one of them (the live feed, `sb:conversation` events) is said at once in the dialog:
 * an action sent now would be refused (`If-Match`).
 */
export function openDialog(dlg, fallback, watch, ctx) {
  const opener = document.activeElement;
  const onKey = (e) => trapFocus(dlg, e);
  const stale = $('[data-stale]', dlg);
  if (stale) stale.textContent = '';
  const onChange = (e) => {
    const c = e.detail;
    const seen = watch?.get(c.id);
    if (stale && seen !== undefined && c.version > seen) {
      stale.textContent = `${c.id} changed after you opened this: it is now ${describe(ctx, c)}. Sending now will be refused; close and look again.`;
    }
  };
  dlg.addEventListener('keydown', onKey);
  if (watch) document.addEventListener('sb:conversation', onChange);
  dlg.addEventListener('close', () => {
    dlg.removeEventListener('keydown', onKey);
    document.removeEventListener('sb:conversation', onChange);
    if (opener && opener.isConnected && !opener.disabled && opener !== document.body) opener.focus();
    else fallback?.();
  }, { once: true });
  for (const b of $$('[data-cancel]', dlg)) b.onclick = () => dlg.close('cancel');
  dlg.showModal();
}

function describe(ctx, c) {
  if (!c) return 'it no longer exists';
  const who = c.representative ? `, held by ${ctx.repName(c.representative)}` : '';
  return `${STATUS_LABEL[c.status] || c.status} in ${ctx.queueName(c.queue)}${who} (version ${c.version})`;
}

/**
 * A plain sentence for a refused action, after refreshing the row it was about.
 * Returns {text, final}: `final` when the dialog's premise is gone (the conversation changed).
 */
export async function explainRefusal(ctx, p, id, action, seenVersion, targetName) {
  const now = await ctx.refreshRow(id);
  switch (p.status) {
    case 412:
      return { final: true, text: `Someone else changed ${id} after you opened this (you saw version ${seenVersion}); nothing was done. It is now ${describe(ctx, now)}. The row has been refreshed: check it and choose again.` };
    case 409:
      return { final: true, text: `${VERB[action]} is not possible now: ${id} is ${describe(ctx, now)}. ${p.detail} The row has been refreshed.` };
    case 422: {
      const reasons = (p.reasons || []).map((r) => `${r.rule}: ${r.detail}`).join('; ');
      return { final: false, text: `${targetName || 'That target'} is not eligible for ${id} under the rules in force${reasons ? ` (${reasons})` : ''}; nothing was done. The list has been refreshed.` };
    }
    case 404:
      return { final: true, text: `${p.detail} Nothing was done.` };
    default:
      return { final: false, text: p.detail || p.message || 'The request failed.' };
  }
}

function setBusy(button, busy) {
  button.disabled = busy;
  button.setAttribute('aria-busy', busy ? 'true' : 'false');
}

/** Release or remove one conversation (If-Match) or several (bulk). */
export function confirmAction(ctx, action, convs) {
  const dlg = $('#confirm-dialog');
  const ok = $('#confirm-ok');
  const result = $('#confirm-result');
  const cancel = $('[data-cancel]', dlg);
  const note = $('#confirm-note');
  const many = convs.length > 1;
  $('#confirm-title').textContent = many ? `${VERB[action]} ${convs.length} conversations` : `${VERB[action]} ${convs[0].id}`;
  $('#confirm-text').textContent = action === 'release'
    ? `Back to open in the same queue, unassigned: ${convs.map((c) => `${c.id} (${c.record.id})`).join(', ')}.`
    : `Closed with reason “removed”; it leaves the ongoing view: ${convs.map((c) => `${c.id} (${c.record.id})`).join(', ')}.`;
  note.value = '';
  result.textContent = '';
  ok.textContent = VERB[action];
  ok.disabled = false;
  cancel.textContent = 'Cancel';
  const versions = new Map(convs.map((c) => [c.id, c.version]));
  $('form', dlg).onsubmit = async (e) => {
    e.preventDefault();
    const body = note.value.trim() ? { note: note.value.trim() } : undefined;
    setBusy(ok, true);
    result.textContent = '';
    try {
      if (many) {
        const answer = await ctx.api.bulk({ action, ids: convs.map((c) => c.id), ...(body || {}) });
        dlg.close('ok');
        showResults(ctx, action, answer.results);
      } else {
        const c = convs[0];
        const now = await ctx.api.act(c.id, action, body, versions.get(c.id));
        ctx.apply(now);
        dlg.close('ok');
        ctx.notice(`${DONE[action]} ${c.id}: now ${describe(ctx, now)}.`);
      }
    } catch (p) {
      if (p.name === 'AbortError') return;
      const { text, final } = await explainRefusal(ctx, p, convs[0].id, action, versions.get(convs[0].id));
      $('[data-stale]', dlg).textContent = '';
      result.textContent = text;
      setBusy(ok, false);
      if (final) { ok.disabled = true; cancel.textContent = 'Close'; }
    }
  };
  openDialog(dlg, ctx.focusGrid, many ? null : versions, ctx);
  note.focus();
}

/** The per-row outcome of a bulk request. */
export function showResults(ctx, action, results) {
  const dlg = $('#results-dialog');
  const ok = results.filter((r) => r.status >= 200 && r.status < 300).length;
  $('#results-title').textContent = `${VERB[action]}: ${results.length} conversation${results.length === 1 ? '' : 's'}`;
  $('#results-summary').textContent = `${ok} done, ${results.length - ok} refused.`;
  const rows = results.map((r) => {
    const good = r.status >= 200 && r.status < 300;
    if (good) ctx.apply(r.conversation); else ctx.refreshRow(r.id);
    return h('tr', { class: good ? 'ok' : 'refused', 'data-id': r.id },
      h('th', { scope: 'row' }, r.id),
      h('td', {}, good ? `${DONE[action]} (${r.status})` : `Refused (${r.status} ${r.problem?.code || ''}): ${r.problem?.detail || ''}`),
      h('td', {}, good ? describe(ctx, r.conversation) : ''));
  });
  $('#results-rows').replaceChildren(...rows);
  openDialog(dlg, ctx.focusGrid);
  $('button', dlg).focus();
}

/** Assign or transfer: the ranked candidates of the (first) selected conversation. */
export function targetDialog(ctx, action, convs) {
  const dlg = $('#target-dialog');
  const form = $('#target-form');
  const conv = convs[0];
  const many = convs.length > 1;
  const version = conv.version;
  const intentBased = !!conv.intent_based;
  const ok = $('#target-ok');
  const cancel = $('[data-cancel]', dlg);
  const result = $('#target-result');
  const list = $('#cand-list');
  const whyNot = $('#why-not');
  const state = { kind: 'representative', limit: PAGE, explain: false, chosen: null, seq: 0, final: false };

  $('#target-title').textContent = many ? `${VERB[action]} ${convs.length} conversations` : `${VERB[action]} ${conv.id}`;
  $('#target-about').textContent = `${conv.record.entity} ${conv.record.id}${conv.record.title ? ` — ${conv.record.title}` : ''} · ${describe(ctx, conv)}` +
    (many ? `. Candidates shown for ${conv.id}; each of the ${convs.length} is checked against the rules on its own.` : '');
  form.reset();
  for (const el of $$('[data-intent]', form)) el.hidden = !intentBased;
  for (const el of $$('[data-plain]', form)) el.hidden = intentBased;
  const queueSelect = $('.queue-options', form);
  queueSelect.replaceChildren(h('option', { value: '' }, 'Any'), ...ctx.queues().map((q) => h('option', { value: q.id }, q.name)));
  $('#rep-filters').hidden = false;
  $('#queue-filters').hidden = true;
  whyNot.setAttribute('aria-pressed', 'false');
  $('#excluded').hidden = true;
  result.textContent = '';
  cancel.textContent = 'Cancel';
  $('#target-note').value = '';

  const params = () => {
    const fd = new FormData(form);
    const visible = (name) => { const el = form.elements[name]; return el && !el.closest('[hidden]'); };
    const out = {};
    if (state.kind === 'representative') {
      for (const k of ['name', 'queue', 'intent_family', 'intent_group', 'intent', 'user_group']) {
        if (visible(k) && fd.get(k)) out[k] = String(fd.get(k)).trim();
      }
      if (visible('skill')) out.skill = String(fd.get('skill') || '').split(/[\s,]+/).filter(Boolean);
      out.presence = fd.getAll('presence');
    } else {
      if (fd.get('qname')) out.name = String(fd.get('qname')).trim();
      for (const k of ['intent_based', 'priority']) if (visible(k) && fd.get(k) !== '') out[k] = String(fd.get(k));
    }
    return out;
  };

  const updateOk = () => {
    const name = state.chosen?.name;
    ok.textContent = name ? `${VERB[action]} to ${name}` : `${VERB[action]}`;
    ok.disabled = !state.chosen || state.final;
  };

  const load = async () => {
    const seq = ++state.seq;
    list.setAttribute('aria-busy', 'true');
    try {
      const answer = await ctx.api.candidates(conv.id, action, state.kind, params(), state.limit, state.explain);
      if (seq !== state.seq) return;
      renderCandidates(answer);
    } catch (p) {
      if (seq !== state.seq || p.name === 'AbortError') return;
      list.replaceChildren();
      if (p.status === 409 || p.status === 404) {
        const { text } = await explainRefusal(ctx, p, conv.id, action, version);
        state.final = true;
        result.textContent = text;
        cancel.textContent = 'Close';
      } else {
        result.textContent = p.detail || p.message;
      }
      updateOk();
    } finally {
      if (seq === state.seq) list.removeAttribute('aria-busy');
    }
  };

  // With "Why not?" on, the answer carries each score's parts: shown on hover.
  const scoreTitle = (c) => {
    if (!c.score_parts) return 'Score under the rules in force';
    if (c.score_parts.length === 0) return 'No rule scores this target';
    return c.score_parts.map((p) => p.by === 'plugin'
      ? `${p.rule}: plugin ${p.plugin} ${p.points >= 0 ? '+' : ''}${p.points}`
      : `${p.rule}: ${p.by}${p.skill ? ` ${p.skill}` : ''} ${p.value} × ${p.weight} = ${p.points}`).join('\n');
  };
  const renderCandidates = (answer) => {
    const kindWord = state.kind === 'representative' ? 'representative' : 'queue';
    $('#cand-count').textContent = `${answer.candidates.length} of ${answer.total} eligible ${kindWord}${answer.total === 1 ? '' : 's'} · rules ${answer.ruleset}`;
    if (state.chosen && !answer.candidates.some((c) => c.id === state.chosen.id)) state.chosen = null;
    const items = answer.candidates.map((c, i) => {
      const input = h('input', { type: 'radio', name: 'target', value: c.id, checked: state.chosen?.id === c.id });
      input.addEventListener('change', () => { state.chosen = c; updateOk(); });
      return h('label', { class: 'cand' }, input,
        h('span', { class: 'rank' }, `${i + 1}.`), h('span', { class: 'name' }, c.name), h('span', { class: 'cid' }, c.id),
        h('span', { class: 'score', title: scoreTitle(c) }, `score ${Number(c.score).toFixed(1)}`));
    });
    if (items.length === 0) items.push(h('p', { class: 'none' }, 'No eligible target matches these filters.'));
    list.replaceChildren(...items);
    $('#cand-more').hidden = answer.candidates.length >= answer.total;
    if (state.explain) {
      const excluded = answer.excluded || [];
      $('#excluded-title').textContent = `Excluded by the rules (${answer.excluded_total ?? excluded.length})`;
      $('#excluded-list').replaceChildren(...(excluded.length ? excluded.map((x) => h('li', { 'data-id': x.id },
        h('span', { class: 'name' }, x.name), ' ', h('span', { class: 'cid' }, x.id),
        h('ul', {}, x.reasons.map((r) => h('li', {}, h('code', {}, r.rule), ': ', r.detail)))))
        : [h('li', {}, 'The rules excluded none of the targets that match these filters.')]));
      $('#excl-more').hidden = excluded.length >= (answer.excluded_total ?? 0);
    }
    updateOk();
  };

  let debounce = null;
  form.oninput = (e) => {
    if (e.target.name === 'target' || e.target.id === 'target-note') return;
    if (e.target.name === 'kind') {
      state.kind = e.target.value;
      state.chosen = null;
      $('#rep-filters').hidden = state.kind !== 'representative';
      $('#queue-filters').hidden = state.kind !== 'queue';
    }
    state.limit = PAGE;
    clearTimeout(debounce);
    debounce = setTimeout(load, e.target.name === 'kind' ? 0 : 250);
  };
  $('#cand-more').onclick = () => { state.limit = Math.min(1000, state.limit + PAGE); load(); };
  $('#excl-more').onclick = $('#cand-more').onclick;
  whyNot.onclick = () => {
    state.explain = !state.explain;
    whyNot.setAttribute('aria-pressed', String(state.explain));
    $('#excluded').hidden = !state.explain;
    load();
  };

  form.onsubmit = async (e) => {
    e.preventDefault();
    if (!state.chosen || state.final) return;
    const target = { [state.kind]: state.chosen.id };
    const note = $('#target-note').value.trim();
    const body = note ? { ...target, note } : target;
    setBusy(ok, true);
    result.textContent = '';
    try {
      if (many) {
        const answer = await ctx.api.bulk({ action, ids: convs.map((c) => c.id), ...body });
        dlg.close('ok');
        showResults(ctx, action, answer.results);
      } else {
        const now = await ctx.api.act(conv.id, action, body, version);
        ctx.apply(now);
        dlg.close('ok');
        ctx.notice(`${DONE[action]} ${conv.id} to ${state.chosen.name}: now ${describe(ctx, now)}.`);
      }
    } catch (p) {
      if (p.name === 'AbortError') return;
      const { text, final } = await explainRefusal(ctx, p, conv.id, action, version, state.chosen?.name);
      $('[data-stale]', dlg).textContent = '';
      result.textContent = text;
      setBusy(ok, false);
      if (final) { state.final = true; cancel.textContent = 'Close'; } else { state.chosen = null; load(); }
      updateOk();
    }
  };

  updateOk();
  openDialog(dlg, ctx.focusGrid, many ? null : new Map([[conv.id, version]]), ctx);
  $('input[name="kind"][value="representative"]', form).focus();
  load();
}

/** A queue's distribution: a dry run first (who would get what), then the real run. */
export function distributeDialog(ctx, queue) {
  const dlg = $('#distribute-dialog');
  const dry = $('#distribute-dry');
  const ok = $('#distribute-ok');
  const max = $('#distribute-max');
  const plan = $('#distribute-plan');
  const result = $('#distribute-result');
  const cancel = $('[data-cancel]', dlg);
  $('#distribute-title').textContent = `Distribute ${queue.name}`;
  plan.replaceChildren(h('p', {}, 'A dry run shows who would get which open conversation, by priority then age; nothing is written until you confirm.'));
  result.textContent = '';
  ok.disabled = true;
  dry.disabled = false;
  cancel.textContent = 'Cancel';
  max.value = '100';
  max.oninput = () => { ok.disabled = true; };

  const show = (answer, dryRun) => {
    const rows = answer.assigned.map((a) => h('tr', {},
      h('th', { scope: 'row' }, a.conversation), h('td', {}, ctx.repName(a.representative)), h('td', {}, Number(a.score).toFixed(1))));
    const left = answer.unassigned.map((u) => h('li', {}, h('strong', {}, u.conversation), `: ${u.reason}`));
    plan.replaceChildren(
      h('p', {}, dryRun
        ? `Dry run (rules ${answer.ruleset}): ${answer.assigned.length} would be assigned, ${answer.unassigned.length} would stay open.`
        : `Done (rules ${answer.ruleset}): ${answer.assigned.length} assigned, ${answer.unassigned.length} stayed open.`),
      rows.length ? h('table', { class: 'results' }, h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Conversation'),
        h('th', { scope: 'col' }, 'Representative'), h('th', { scope: 'col' }, 'Score'))), h('tbody', {}, rows)) : '',
      left.length ? h('ul', { class: 'left' }, left) : '');
  };
  const value = () => {
    const n = Number(max.value);
    return Number.isInteger(n) && n >= 1 && n <= 1000 ? n : null;
  };
  dry.onclick = async () => {
    const n = value();
    if (n === null) { result.textContent = 'Give a whole number from 1 to 1000.'; return; }
    result.textContent = '';
    setBusy(dry, true);
    try {
      show(await ctx.api.distribute(queue.id, n, true), true);
      ok.disabled = false;
      ok.focus();
    } catch (p) {
      result.textContent = p.detail || p.message;
    } finally {
      setBusy(dry, false);
    }
  };
  ok.onclick = async () => {
    const n = value();
    if (n === null) return;
    setBusy(ok, true);
    try {
      const answer = await ctx.api.distribute(queue.id, n, false);
      show(answer, false);
      for (const a of answer.assigned) ctx.refreshRow(a.conversation);
      ok.disabled = true;
      dry.disabled = true;
      cancel.textContent = 'Close';
      cancel.focus();
    } catch (p) {
      result.textContent = p.detail || p.message;
      setBusy(ok, false);
    }
  };
  openDialog(dlg, ctx.focusGrid);
  dry.focus();
}
