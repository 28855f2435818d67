// The grid of conversations: a table with role=grid, one row per conversation,
// aria-selected rows, a roving tabindex (one row in the Tab order; arrows move), and
// rows built from a <template> into a DocumentFragment (one insertion per render).

import { STATUS_LABEL, age, intentText } from './dom.js';

export class Grid {
  /**
   * @param {HTMLTableSectionElement} tbody
   * @param {HTMLTemplateElement} template
   * @param {{repName: (id) => string, queueName: (id) => string, matches: (c) => boolean,
   *          onSelection: () => void, onOpen: (c) => void}} opts
   */
  constructor(tbody, template, opts) {
    this.tbody = tbody;
    this.proto = template.content.firstElementChild;
    this.opts = opts;
    /** id -> {c: conversation, tr: row} in display order. */
    this.rows = new Map();
    this.selectedIds = new Set();
    this.anchor = null;
    tbody.addEventListener('click', (e) => this.click(e));
    tbody.addEventListener('keydown', (e) => this.key(e));
  }

  /** Replaces every row. */
  render(items) {
    this.rows.clear();
    const fragment = document.createDocumentFragment();
    const now = Date.now();
    for (const c of items) {
      const tr = this.proto.cloneNode(true);
      this.fill(tr, c, now);
      this.rows.set(c.id, { c, tr });
      fragment.append(tr);
    }
    const keep = new Set([...this.selectedIds].filter((id) => this.rows.has(id)));
    this.selectedIds = keep;
    for (const id of keep) this.rows.get(id).tr.setAttribute('aria-selected', 'true');
    this.tbody.replaceChildren(fragment);
    const first = this.tbody.firstElementChild;
    if (first) first.tabIndex = 0;
    this.opts.onSelection();
  }

  fill(tr, c, now = Date.now()) {
    tr.dataset.id = c.id;
    tr.dataset.status = c.status;
    const cells = tr.cells;
    const rec = cells[1];
    rec.children[0].textContent = c.record.entity;
    rec.children[1].textContent = c.record.id;
    rec.children[2].textContent = c.id;
    rec.children[3].textContent = c.record.title || '';
    cells[2].textContent = this.opts.queueName(c.queue);
    const status = cells[3].firstElementChild;
    status.textContent = STATUS_LABEL[c.status] || c.status;
    status.dataset.status = c.status;
    cells[4].textContent = c.representative ? this.opts.repName(c.representative) : '—';
    cells[5].textContent = String(c.priority);
    cells[6].textContent = intentText(c.intent);
    cells[7].textContent = age(c.created_at, now);
    cells[7].title = c.created_at;
    const outside = !this.opts.matches(c);
    tr.classList.toggle('outside', outside);
    tr.title = outside ? 'No longer matches the filters; it leaves the grid at the next refresh' : '';
  }

  /** Updates a row in place, or appends it (`append`: the page shows the end of the list). */
  upsert(c, append) {
    const row = this.rows.get(c.id);
    if (row) {
      row.c = c;
      this.fill(row.tr, c);
      row.tr.classList.remove('flash');
      void row.tr.offsetWidth; // restart the highlight
      row.tr.classList.add('flash');
    } else if (append && this.opts.matches(c)) {
      const tr = this.proto.cloneNode(true);
      this.fill(tr, c);
      this.rows.set(c.id, { c, tr });
      if (!this.tbody.querySelector('[tabindex="0"]')) tr.tabIndex = 0;
      this.tbody.append(tr);
    } else {
      return;
    }
    this.opts.onSelection();
  }

  get(id) { return this.rows.get(id)?.c; }

  refreshNames() { for (const { c, tr } of this.rows.values()) this.fill(tr, c); }

  tickAges() {
    const now = Date.now();
    for (const { c, tr } of this.rows.values()) tr.cells[7].textContent = age(c.created_at, now);
  }

  selected() { return [...this.selectedIds].map((id) => this.rows.get(id)?.c).filter(Boolean); }

  setSelected(ids) {
    for (const id of this.selectedIds) this.rows.get(id)?.tr.setAttribute('aria-selected', 'false');
    this.selectedIds = new Set(ids.filter((id) => this.rows.has(id)));
    for (const id of this.selectedIds) this.rows.get(id).tr.setAttribute('aria-selected', 'true');
    this.opts.onSelection();
  }

  toggle(id) {
    const ids = new Set(this.selectedIds);
    if (ids.has(id)) ids.delete(id); else ids.add(id);
    this.anchor = id;
    this.setSelected([...ids]);
  }

  focusRow(tr) {
    if (!tr) return;
    const current = this.tbody.querySelector('tr[tabindex="0"]');
    if (current && current !== tr) current.tabIndex = -1;
    tr.tabIndex = 0;
    tr.focus();
  }

  /** Focus the active row (where Tab enters the grid). */
  focus() { this.focusRow(this.tbody.querySelector('tr[tabindex="0"]') || this.tbody.firstElementChild); }

  range(fromId, toId) {
    const ids = [...this.rows.keys()];
    const a = ids.indexOf(fromId);
    const b = ids.indexOf(toId);
    if (a < 0 || b < 0) return [toId];
    return ids.slice(Math.min(a, b), Math.max(a, b) + 1);
  }

  click(e) {
    const tr = e.target.closest('tr');
    if (!tr || !tr.dataset.id) return;
    const id = tr.dataset.id;
    this.focusRow(tr);
    if (e.shiftKey && this.anchor) this.setSelected(this.range(this.anchor, id));
    else if (e.ctrlKey || e.metaKey || e.target.closest('.c-sel')) this.toggle(id);
    else { this.anchor = id; this.setSelected([id]); }
  }

  key(e) {
    const tr = e.target.closest('tr');
    if (!tr || !tr.dataset.id) return;
    let next = null;
    switch (e.key) {
      case 'ArrowDown': next = tr.nextElementSibling; break;
      case 'ArrowUp': next = tr.previousElementSibling; break;
      case 'Home': next = this.tbody.firstElementChild; break;
      case 'End': next = this.tbody.lastElementChild; break;
      case 'PageDown': next = this.tbody.children[Math.min(this.tbody.children.length - 1, tr.sectionRowIndex + 10)]; break;
      case 'PageUp': next = this.tbody.children[Math.max(0, tr.sectionRowIndex - 10)]; break;
      case ' ':
        e.preventDefault();
        if (e.shiftKey && this.anchor) this.setSelected(this.range(this.anchor, tr.dataset.id));
        else this.toggle(tr.dataset.id);
        return;
      case 'Enter':
        e.preventDefault();
        this.opts.onOpen(this.rows.get(tr.dataset.id)?.c);
        return;
      case 'Escape':
        this.setSelected([]);
        return;
      case 'a':
        if (e.ctrlKey || e.metaKey) { e.preventDefault(); this.setSelected([...this.rows.keys()]); }
        return;
      default:
        return;
    }
    e.preventDefault();
    if (!next) return;
    this.focusRow(next);
    if (e.shiftKey) {
      this.anchor ??= tr.dataset.id;
      this.setSelected(this.range(this.anchor, next.dataset.id));
    }
  }
}
