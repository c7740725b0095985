// lume web chat. Talks to the server it came from: GET /props (model name, context size,
// default sampling settings; with several models, their names for a picker) and
// POST /v1/chat/completions (streamed, with usage).
// Conversations, the API key and the theme are kept in localStorage. Model output is
// untrusted: it is rendered as Markdown by marked, then cleaned by DOMPurify, then
// highlighted by highlight.js; nothing from a reply is ever evaluated.
(function () {
  'use strict';

  const STORE = 'lume.chat.v1';
  const KEY_STORE = 'lume.apiKey';
  const THEME_STORE = 'lume.theme';
  const MODEL_STORE = 'lume.model';
  const SETTINGS = ['temperature', 'top_p', 'top_k', 'min_p', 'max_tokens', 'seed'];
  const INTEGER = new Set(['top_k', 'max_tokens', 'seed']);

  const $ = (sel) => document.querySelector(sel);
  const el = (tag, props, ...children) => {
    const e = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (k === 'class') e.className = v;
        else if (k === 'text') e.textContent = v;
        else if (k === 'on') for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
        else if (k in e && typeof v !== 'string') e[k] = v;
        else e.setAttribute(k, v);
      }
    }
    for (const c of children) if (c != null) e.append(c);
    return e;
  };

  // ---------------------------------------------------------------- state and storage

  const state = {
    convs: [], // {id, title, renamed, created, updated, system, settings, messages}
    current: null, // id
    server: null, // /props answer
    gen: null, // {convId, msg, ctrl}
    editing: null, // index of the user message being edited
  };

  function uid() {
    const a = new Uint8Array(8);
    crypto.getRandomValues(a);
    return Array.from(a, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  function blankSettings() {
    const s = {};
    for (const k of SETTINGS) s[k] = null;
    return s;
  }

  function normalizeConv(c) {
    if (!c || typeof c !== 'object' || typeof c.id !== 'string') return null;
    const settings = blankSettings();
    for (const k of SETTINGS) {
      const v = c.settings ? c.settings[k] : null;
      settings[k] = typeof v === 'number' && Number.isFinite(v) ? v : null;
    }
    const messages = Array.isArray(c.messages)
      ? c.messages
          .filter((m) => m && (m.role === 'user' || m.role === 'assistant') && typeof m.content === 'string')
          .map((m) => ({ role: m.role, content: m.content, stats: m.stats || null, error: m.error || null }))
      : [];
    return {
      id: c.id,
      title: typeof c.title === 'string' && c.title ? c.title : 'New chat',
      renamed: !!c.renamed,
      created: c.created || Date.now(),
      updated: c.updated || c.created || Date.now(),
      system: typeof c.system === 'string' ? c.system : '',
      settings,
      messages,
    };
  }

  function load() {
    let data = null;
    try {
      data = JSON.parse(localStorage.getItem(STORE) || 'null');
    } catch (_) {
      data = null;
    }
    state.convs = data && Array.isArray(data.conversations)
      ? data.conversations.map(normalizeConv).filter(Boolean)
      : [];
    state.current = data && state.convs.some((c) => c.id === data.current) ? data.current : null;
    if (!state.current && state.convs.length) state.current = sorted()[0].id;
  }

  function save() {
    try {
      localStorage.setItem(STORE, JSON.stringify({ version: 1, current: state.current, conversations: state.convs }));
    } catch (e) {
      toast('Could not save the conversations: ' + e.message);
    }
  }

  let saveTimer = null;
  function saveSoon() {
    if (saveTimer) return;
    saveTimer = setTimeout(() => { saveTimer = null; save(); }, 1000);
  }

  const sorted = () => state.convs.slice().sort((a, b) => b.updated - a.updated);
  const current = () => state.convs.find((c) => c.id === state.current) || null;

  function newConv() {
    const from = current();
    const c = {
      id: uid(),
      title: 'New chat',
      renamed: false,
      created: Date.now(),
      updated: Date.now(),
      system: from ? from.system : '',
      settings: from ? Object.assign(blankSettings(), from.settings) : blankSettings(),
      messages: [],
    };
    state.convs.push(c);
    state.current = c.id;
    return c;
  }

  function titleFrom(text) {
    const t = text.replace(/\s+/g, ' ').trim();
    return t.length > 48 ? t.slice(0, 47) + '…' : t || 'New chat';
  }

  // ---------------------------------------------------------------- the API key and requests

  const getKey = () => localStorage.getItem(KEY_STORE) || '';
  function setKey(k) {
    if (k) localStorage.setItem(KEY_STORE, k);
    else localStorage.removeItem(KEY_STORE);
  }

  let keyAsk = null; // one prompt shared by every request that got a 401 meanwhile
  function askKey(message) {
    if (keyAsk) return keyAsk;
    const dlg = $('#key-dialog');
    $('#key-msg').textContent = message;
    $('#key-input').value = '';
    keyAsk = new Promise((resolve) => {
      const done = (v) => {
        dlg.removeEventListener('close', onClose);
        if (dlg.open) dlg.close();
        keyAsk = null;
        resolve(v);
      };
      const onClose = () => done(null);
      dlg.addEventListener('close', onClose);
      $('#key-form').onsubmit = (e) => {
        e.preventDefault();
        const v = $('#key-input').value.trim();
        if (v) done(v);
      };
      $('#key-cancel').onclick = () => done(null);
      $('#key-clear').onclick = () => { setKey(''); done(null); };
      dlg.showModal();
      $('#key-input').focus();
    });
    return keyAsk;
  }

  // fetch with the stored key as Bearer; a 401 asks for a key and tries again.
  async function api(path, init) {
    for (;;) {
      const headers = new Headers((init && init.headers) || {});
      const key = getKey();
      if (key) headers.set('Authorization', 'Bearer ' + key);
      const res = await fetch(path, Object.assign({}, init, { headers }));
      if (res.status !== 401) return res;
      const k = await askKey(key
        ? 'The server refused this key. Enter the right one:'
        : 'This server needs an API key.');
      if (k == null) return res;
      setKey(k);
    }
  }

  async function errorText(res) {
    let msg = '';
    try {
      const j = await res.json();
      msg = (j && j.error && (j.error.message || j.error)) || JSON.stringify(j);
    } catch (_) {
      msg = res.statusText;
    }
    return `HTTP ${res.status}: ${msg}`;
  }

  // The events of a server-sent event stream, as parsed JSON (ends at [DONE] or the end).
  async function* sse(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buf = (buf + value).replace(/\r\n/g, '\n');
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = block.split('\n')
            .filter((l) => l.startsWith('data:'))
            .map((l) => l.slice(5).replace(/^ /, ''))
            .join('\n');
          if (!data) continue;
          if (data === '[DONE]') return;
          yield JSON.parse(data);
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  // ---------------------------------------------------------------- server properties

  async function loadProps() {
    const info = $('#model-info');
    for (let delay = 1000; ; delay = Math.min(delay * 2, 8000)) {
      let res;
      try {
        res = await api('/props');
      } catch (e) {
        info.textContent = 'server unreachable';
        await sleep(delay);
        continue;
      }
      if (res.ok) {
        state.server = await res.json();
        const p = state.server;
        if (p.model == null && Array.isArray(p.models)) {
          modelPicker(info, p);
          renderMessages();
          return;
        }
        info.textContent = `${p.model} · ${p.n_ctx} ctx`;
        info.title = `${p.model}: context of ${p.n_ctx} tokens, ${p.total_slots} slots` +
          (p.build_info ? ` (${p.build_info})` : '');
        renderMessages();
        return;
      }
      if (res.status === 401) {
        info.replaceChildren(el('button', { type: 'button', text: 'API key needed', on: { click: () => loadProps() } }));
        return;
      }
      info.textContent = res.status === 503 ? 'loading model…' : `error ${res.status}`;
      await sleep(delay);
    }
  }

  // A server of several models (`lume serve` without -m): /props names them instead of one;
  // the chat names the one picked here (kept in localStorage), which loads on first use.
  function modelPicker(info, p) {
    const names = p.models.map((m) => String(m.id));
    let pick = localStorage.getItem(MODEL_STORE);
    if (!names.includes(pick)) pick = names[0] || null;
    p.model = pick;
    const sel = el('select', {
      id: 'model-select',
      'aria-label': 'Model',
      on: {
        change: () => {
          p.model = sel.value;
          localStorage.setItem(MODEL_STORE, sel.value);
          renderMessages();
        },
      },
    }, ...names.map((n) => el('option', { value: n, text: n })));
    if (pick) sel.value = pick;
    info.replaceChildren(sel);
    info.title = `${names.length} models, each loaded on its first request`;
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // ---------------------------------------------------------------- Markdown

  function setupMarkdown() {
    marked.use({ gfm: true, breaks: false });
    DOMPurify.addHook('afterSanitizeAttributes', (node) => {
      if (node.tagName === 'A' && node.hasAttribute('href')) {
        node.setAttribute('target', '_blank');
        node.setAttribute('rel', 'noopener noreferrer nofollow');
      }
    });
    hljs.configure({ ignoreUnescapedHTML: true });
  }

  const PURIFY = {
    FORBID_TAGS: ['style', 'form', 'input', 'button', 'textarea', 'select', 'option'],
    FORBID_ATTR: ['style'],
  };

  // `streaming`: a reply still growing, re-rendered each frame: code without a language is
  // left plain until the end (guessing it runs every grammar over the text).
  function renderMarkdown(target, text, streaming) {
    let html;
    try {
      html = DOMPurify.sanitize(marked.parse(text), PURIFY);
    } catch (e) {
      target.textContent = text;
      return;
    }
    target.innerHTML = html;
    for (const code of target.querySelectorAll('pre > code')) {
      const pre = code.parentElement;
      const m = /(?:^|\s)language-([\w+#.-]+)/.exec(code.className);
      let lang = m ? m[1] : '';
      if (lang && !hljs.getLanguage(lang)) {
        code.className = '';
      }
      if (lang && hljs.getLanguage(lang)) {
        hljs.highlightElement(code);
      } else if (!streaming) {
        const r = hljs.highlightAuto(code.textContent);
        code.innerHTML = r.value; // highlight.js escapes the text it was given
        code.classList.add('hljs');
        if (!lang && r.language) lang = r.language;
      }
      const copy = el('button', { type: 'button', class: 'copy-code', text: 'Copy' });
      copy.addEventListener('click', () => copyText(code.textContent, copy));
      pre.prepend(el('div', { class: 'code-head' }, el('span', { text: lang || 'text' }), copy));
    }
  }

  async function copyText(text, button) {
    let ok = false;
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(text);
        ok = true;
      }
    } catch (_) {
      ok = false;
    }
    if (!ok) {
      const ta = el('textarea', { class: 'offscreen' });
      ta.value = text;
      ta.style.position = 'fixed';
      ta.style.opacity = '0';
      document.body.append(ta);
      ta.select();
      try { ok = document.execCommand('copy'); } catch (_) { ok = false; }
      ta.remove();
    }
    if (button) {
      const old = button.textContent;
      button.textContent = ok ? 'Copied' : 'Copy failed';
      setTimeout(() => { button.textContent = old; }, 1500);
    }
  }

  // ---------------------------------------------------------------- rendering

  function renderSidebar() {
    const list = $('#conv-list');
    list.replaceChildren();
    for (const c of sorted()) {
      const li = el('li', { class: 'conv-item' + (c.id === state.current ? ' active' : ''), 'data-id': c.id });
      const open = el('button', { type: 'button', class: 'conv-open', text: c.title, title: c.title });
      open.addEventListener('click', () => select(c.id));
      li.append(
        open,
        iconButton('rename', 'Rename', () => startRename(li, c)),
        iconButton('export', 'Export as JSON', () => exportConvs([c], c.title)),
        iconButton('delete', 'Delete', () => deleteConv(c)),
      );
      list.append(li);
    }
    const c = current();
    $('#conv-title').textContent = c ? c.title : 'New chat';
    document.title = c && c.messages.length ? `${c.title} · lume` : 'lume chat';
  }

  const ICONS = {
    rename: 'M4 20h4L19 9l-4-4L4 16v4zM13.5 6.5l4 4',
    export: 'M12 4v11m-4-4 4 4 4-4M5 19h14',
    delete: 'M5 7h14M10 7V5h4v2m-7 0 1 12h8l1-12',
  };

  function iconButton(name, label, onClick) {
    const b = el('button', { type: 'button', class: `icon-btn tiny conv-act conv-${name}`, 'aria-label': label, title: label });
    const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    const p = document.createElementNS('http://www.w3.org/2000/svg', 'path');
    p.setAttribute('d', ICONS[name]);
    svg.append(p);
    b.append(svg);
    b.addEventListener('click', (e) => { e.stopPropagation(); onClick(); });
    return b;
  }

  function startRename(li, c) {
    const input = el('input', { class: 'conv-rename-input', 'aria-label': 'New title' });
    input.value = c.title;
    let done = false;
    const finish = (keep) => {
      if (done) return;
      done = true;
      const t = input.value.trim();
      if (keep && t && t !== c.title) {
        c.title = t.slice(0, 200);
        c.renamed = true;
        save();
      }
      renderSidebar();
    };
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') { e.preventDefault(); finish(true); }
      if (e.key === 'Escape') { e.preventDefault(); finish(false); }
    });
    input.addEventListener('blur', () => finish(true));
    li.replaceChildren(input);
    input.focus();
    input.select();
  }

  function statsText(m) {
    const s = m.stats;
    if (!s) return '';
    const parts = [];
    if (s.completion_tokens != null) {
      const approx = s.approx ? '≈' : '';
      parts.push(s.prompt_tokens != null
        ? `${s.prompt_tokens} prompt + ${approx}${s.completion_tokens} reply tokens`
        : `${approx}${s.completion_tokens} reply tokens`);
    }
    if (s.tps != null) parts.push(`${s.tps.toFixed(1)} tok/s`);
    if (s.ms != null) parts.push(`${(s.ms / 1000).toFixed(1)} s`);
    if (s.stopped) parts.push('stopped');
    else if (s.finish === 'length') parts.push('cut at max tokens');
    return parts.join(' · ');
  }

  function renderEmpty(box) {
    const p = state.server;
    box.append(el('div', { class: 'empty' },
      el('h2', { text: 'Chat with ' + (p ? p.model : 'lume') }),
      el('p', { text: p && p.n_ctx ? `Context of ${p.n_ctx} tokens. Replies stream in as they are generated.` : 'Type a message below.' })));
  }

  function messageView(c, m, i) {
    const isUser = m.role === 'user';
    const generating = state.gen && state.gen.msg === m;
    const busy = !!state.gen;
    const art = el('article', { class: `msg ${m.role}`, 'data-index': String(i) });
    art.append(el('div', { class: 'msg-role', text: isUser ? 'You' : (state.server ? state.server.model : 'Assistant') }));
    if (isUser && state.editing === i) {
      const ta = el('textarea', { class: 'edit-input', 'aria-label': 'Edit message' });
      ta.value = m.content;
      const sendEdit = () => {
        const t = ta.value.trim();
        if (!t) return;
        state.editing = null;
        c.messages = c.messages.slice(0, i);
        pushUser(c, t);
        generate(c);
      };
      ta.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); sendEdit(); }
        if (e.key === 'Escape') { state.editing = null; renderMessages(); }
      });
      art.append(el('div', { class: 'edit-box' }, ta, el('div', null,
        el('button', { type: 'button', class: 'btn small', text: 'Cancel', on: { click: () => { state.editing = null; renderMessages(); } } }),
        el('button', { type: 'button', class: 'btn small primary edit-send', text: 'Send', on: { click: sendEdit } }))));
      setTimeout(() => ta.focus(), 0);
      return art;
    }
    const body = el('div', { class: 'msg-body' + (isUser ? '' : ' markdown') + (generating ? ' pending' : '') });
    if (isUser) body.textContent = m.content;
    else renderMarkdown(body, m.content);
    art.append(body);
    if (m.error) art.append(el('div', { class: 'msg-error', text: m.error }));
    const foot = el('div', { class: 'msg-foot' });
    if (!isUser) foot.append(el('span', { class: 'stats', text: statsText(m) }));
    if (!generating) {
      foot.append(el('button', { type: 'button', class: 'msg-act act-copy', text: 'Copy', on: { click: (e) => copyText(m.content, e.currentTarget) } }));
      if (isUser) {
        foot.append(el('button', { type: 'button', class: 'msg-act act-edit', text: 'Edit', disabled: busy, on: { click: () => { state.editing = i; renderMessages(); } } }));
      } else {
        foot.append(el('button', {
          type: 'button', class: 'msg-act act-regen', text: 'Regenerate', disabled: busy,
          on: { click: () => { c.messages = c.messages.slice(0, i); generate(c); } },
        }));
      }
    }
    art.append(foot);
    return art;
  }

  function renderMessages() {
    const box = $('#messages');
    const c = current();
    box.replaceChildren();
    if (!c || !c.messages.length) {
      renderEmpty(box);
    } else {
      c.messages.forEach((m, i) => box.append(messageView(c, m, i)));
    }
    box.scrollTop = box.scrollHeight;
    updateComposer();
  }

  // Only the reply being generated (called once per animation frame at most).
  let frame = 0;
  function updateStreaming() {
    if (frame) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      const g = state.gen;
      if (!g || g.convId !== state.current) return;
      const c = current();
      const i = c.messages.indexOf(g.msg);
      const art = $(`#messages article[data-index="${i}"]`);
      if (!art) return renderMessages();
      const box = $('#messages');
      const atEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
      renderMarkdown(art.querySelector('.msg-body'), g.msg.content, true);
      art.querySelector('.stats').textContent = statsText(g.msg);
      if (atEnd) box.scrollTop = box.scrollHeight;
    });
  }

  function updateComposer() {
    const busy = !!state.gen;
    $('#send').hidden = busy;
    $('#stop').hidden = !busy;
  }

  function renderAll() {
    renderSidebar();
    renderMessages();
  }

  function select(id) {
    state.current = id;
    state.editing = null;
    save();
    closeSidebar();
    renderAll();
  }

  // ---------------------------------------------------------------- conversations

  function deleteConv(c) {
    confirmDialog(`Delete “${c.title}”?`).then((yes) => {
      if (!yes) return;
      if (state.gen && state.gen.convId === c.id) state.gen.ctrl.abort();
      state.convs = state.convs.filter((x) => x.id !== c.id);
      if (state.current === c.id) state.current = state.convs.length ? sorted()[0].id : null;
      save();
      renderAll();
    });
  }

  function confirmDialog(text) {
    const dlg = $('#confirm-dialog');
    $('#confirm-text').textContent = text;
    return new Promise((resolve) => {
      const done = (v) => {
        dlg.removeEventListener('close', onClose);
        if (dlg.open) dlg.close();
        resolve(v);
      };
      const onClose = () => done(false);
      dlg.addEventListener('close', onClose);
      $('#confirm-form').onsubmit = (e) => { e.preventDefault(); done(true); };
      $('#confirm-cancel').onclick = () => done(false);
      dlg.showModal();
      $('#confirm-ok').focus();
    });
  }

  function exportConvs(convs, name) {
    const data = {
      format: 'lume-chat',
      version: 1,
      exported: new Date().toISOString(),
      model: state.server ? state.server.model : null,
      conversations: convs,
    };
    const blob = new Blob([JSON.stringify(data, null, 2)], { type: 'application/json' });
    const url = URL.createObjectURL(blob);
    const slug = name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 40) || 'chat';
    const a = el('a', { href: url, download: `lume-${slug}.json` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  // ---------------------------------------------------------------- sending and streaming

  function pushUser(c, text) {
    c.messages.push({ role: 'user', content: text, stats: null, error: null });
    if (!c.renamed && c.messages.filter((m) => m.role === 'user').length === 1) c.title = titleFrom(text);
    c.updated = Date.now();
  }

  function send() {
    const input = $('#input');
    const text = input.value.trim();
    if (!text || state.gen) return;
    const c = current() || newConv();
    state.editing = null;
    pushUser(c, text);
    input.value = '';
    autosize();
    generate(c);
  }

  function requestBody(c) {
    const messages = [];
    if (c.system.trim()) messages.push({ role: 'system', content: c.system });
    for (const m of c.messages) {
      if (m.role === 'assistant' && !m.content) continue; // a failed or empty reply
      messages.push({ role: m.role, content: m.content });
    }
    const body = { messages, stream: true, stream_options: { include_usage: true } };
    if (state.server && state.server.model) body.model = state.server.model;
    for (const k of SETTINGS) if (c.settings[k] != null) body[k] = c.settings[k];
    return body;
  }

  async function generate(c) {
    const msg = { role: 'assistant', content: '', stats: {}, error: null };
    const body = requestBody(c);
    c.messages.push(msg);
    c.updated = Date.now();
    const ctrl = new AbortController();
    state.gen = { convId: c.id, msg, ctrl };
    save();
    renderAll();
    const t0 = performance.now();
    let tFirst = null;
    let tLast = null;
    let pieces = 0;
    let usage = null;
    try {
      const res = await api('/v1/chat/completions', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
        signal: ctrl.signal,
      });
      if (!res.ok) throw new Error(await errorText(res));
      for await (const ev of sse(res.body)) {
        if (ev.error) throw new Error(ev.error.message || JSON.stringify(ev.error));
        const ch = ev.choices && ev.choices[0];
        if (ch && ch.delta && typeof ch.delta.content === 'string' && ch.delta.content) {
          tLast = performance.now();
          if (tFirst == null) tFirst = tLast;
          msg.content += ch.delta.content;
          pieces += 1;
          msg.stats = liveStats(pieces, tFirst, tLast, t0);
          updateStreaming();
          saveSoon();
        }
        if (ch && ch.finish_reason) msg.stats.finish = ch.finish_reason;
        if (ev.usage) usage = ev.usage;
      }
    } catch (e) {
      if (e.name === 'AbortError') msg.stats.stopped = true;
      else msg.error = e.message || String(e);
    }
    const tEnd = performance.now();
    const finish = msg.stats.finish;
    const stopped = !!msg.stats.stopped;
    const n = usage ? usage.completion_tokens : pieces;
    msg.stats = {
      prompt_tokens: usage ? usage.prompt_tokens : null,
      completion_tokens: n || (msg.content ? pieces : 0),
      approx: !usage,
      // Generation speed: the tokens after the first over the time since the first.
      tps: tFirst != null && tLast > tFirst && n > 1 ? ((n - 1) * 1000) / (tLast - tFirst) : null,
      ttft_ms: tFirst != null ? tFirst - t0 : null,
      ms: tEnd - t0,
      finish: finish || null,
      stopped,
    };
    if (!msg.content && !msg.error && !stopped) msg.error = '(the reply is empty)';
    state.gen = null;
    c.updated = Date.now();
    save();
    if (state.current === c.id) renderAll();
    else renderSidebar();
    updateComposer();
    $('#input').focus();
  }

  function liveStats(pieces, tFirst, tLast, t0) {
    return {
      completion_tokens: pieces,
      approx: true,
      tps: tLast > tFirst && pieces > 1 ? ((pieces - 1) * 1000) / (tLast - tFirst) : null,
      ms: tLast - t0,
    };
  }

  function stop() {
    if (state.gen) state.gen.ctrl.abort();
  }

  // ---------------------------------------------------------------- settings dialog

  function openSettings() {
    const c = current() || newConv();
    const dlg = $('#settings-dialog');
    $('#set-system').value = c.system;
    const defaults = (state.server && state.server.default_generation_settings &&
      state.server.default_generation_settings.params) || {};
    for (const k of SETTINGS) {
      const input = $('#set-' + k);
      input.value = c.settings[k] == null ? '' : String(c.settings[k]);
      const d = defaults[k];
      input.placeholder = d == null ? (k === 'seed' ? 'random' : '') : String(d);
    }
    $('#settings-error').hidden = true;
    dlg.showModal();
  }

  function saveSettings(e) {
    e.preventDefault();
    const c = current();
    const next = blankSettings();
    for (const k of SETTINGS) {
      const input = $('#set-' + k);
      const raw = input.value.trim();
      if (!raw) continue;
      const v = Number(raw);
      const range = input.validity.rangeUnderflow || input.validity.rangeOverflow || input.validity.badInput;
      const bad = !Number.isFinite(v) || (INTEGER.has(k) && !Number.isInteger(v)) || range;
      if (bad) {
        const err = $('#settings-error');
        err.textContent = `${input.parentElement.firstChild.textContent.trim()}: ${raw} is not allowed here` +
          (input.min || input.max ? ` (${input.min || '…'} to ${input.max || '…'})` : '');
        err.hidden = false;
        input.focus();
        return;
      }
      next[k] = v;
    }
    c.system = $('#set-system').value;
    c.settings = next;
    c.updated = Date.now();
    save();
    $('#settings-dialog').close();
    renderSidebar();
  }

  // ---------------------------------------------------------------- theme, sidebar, composer

  function applyTheme(t) {
    document.documentElement.dataset.theme = t;
    $('#hljs-light').disabled = t === 'dark';
    $('#hljs-dark').disabled = t !== 'dark';
  }

  function initialTheme() {
    const t = localStorage.getItem(THEME_STORE);
    if (t === 'dark' || t === 'light') return t;
    return window.matchMedia && window.matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
  }

  const openSidebar = () => $('#app').classList.add('sidebar-open');
  const closeSidebar = () => $('#app').classList.remove('sidebar-open');

  function autosize() {
    const ta = $('#input');
    ta.style.height = 'auto';
    ta.style.height = Math.min(ta.scrollHeight + 2, window.innerHeight * 0.4) + 'px';
  }

  let toastTimer = null;
  function toast(text) {
    const t = $('#toast');
    t.textContent = text;
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, 4000);
  }

  // ---------------------------------------------------------------- start

  function start() {
    setupMarkdown();
    applyTheme(initialTheme());
    load();
    $('#composer').addEventListener('submit', (e) => { e.preventDefault(); send(); });
    $('#input').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
    });
    $('#input').addEventListener('input', autosize);
    $('#stop').addEventListener('click', stop);
    $('#new-chat').addEventListener('click', () => {
      const c = current();
      if (!c || c.messages.length || state.gen) newConv();
      save();
      closeSidebar();
      renderAll();
      $('#input').focus();
    });
    $('#export-all').addEventListener('click', () => exportConvs(sorted(), 'all'));
    $('#set-key').addEventListener('click', async () => {
      const k = await askKey(getKey() ? 'Replace the stored key:' : 'Enter the API key of this server:');
      if (k) {
        setKey(k);
        loadProps();
      }
    });
    $('#open-settings').addEventListener('click', openSettings);
    $('#settings-form').addEventListener('submit', saveSettings);
    $('#settings-cancel').addEventListener('click', () => $('#settings-dialog').close());
    $('#settings-reset').addEventListener('click', () => {
      for (const k of SETTINGS) $('#set-' + k).value = '';
    });
    $('#theme').addEventListener('click', () => {
      const t = document.documentElement.dataset.theme === 'dark' ? 'light' : 'dark';
      localStorage.setItem(THEME_STORE, t);
      applyTheme(t);
    });
    $('#menu').addEventListener('click', openSidebar);
    $('#scrim').addEventListener('click', closeSidebar);
    window.addEventListener('storage', (e) => {
      if (e.key === STORE && !state.gen) { load(); renderAll(); }
      if (e.key === THEME_STORE) applyTheme(initialTheme());
    });
    renderAll();
    loadProps();
    $('#input').focus();
  }

  start();
})();
