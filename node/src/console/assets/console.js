// The ALPR web console's only script. Keys: each person's ECDSA P-256 key is made here
// with WebCrypto as non-extractable and kept in this browser's IndexedDB; it signs the
// enrollment proof, each sign-in challenge, and each search's exact bytes. Nothing here
// can read the private key out, and the server never sees it.
'use strict';
(function () {
  const ori = document.body.dataset.ori;
  const ALG = { name: 'ECDSA', namedCurve: 'P-256' };
  const SIG = { name: 'ECDSA', hash: 'SHA-256' };
  const enc = new TextEncoder();
  const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, '0')).join('');
  const unhex = (s) => new Uint8Array((s.match(/../g) || []).map((h) => parseInt(h, 16)));
  const message = (parts) => enc.encode(parts.join('\u0000'));
  const status = (text) => {
    const s = document.getElementById('key-status');
    if (s) { s.textContent = text; s.className = 'error'; s.setAttribute('role', 'alert'); }
  };

  function store() {
    return new Promise((resolve, reject) => {
      const r = indexedDB.open('alpr-console', 1);
      r.onupgradeneeded = () => r.result.createObjectStore('keys');
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
  }
  async function putKey(name, key) {
    const db = await store();
    return new Promise((resolve, reject) => {
      const t = db.transaction('keys', 'readwrite');
      t.objectStore('keys').put(key, name);
      t.oncomplete = () => resolve();
      t.onerror = () => reject(t.error);
    });
  }
  async function getKey(name) {
    const db = await store();
    return new Promise((resolve, reject) => {
      const r = db.transaction('keys', 'readonly').objectStore('keys').get(name);
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
  }
  async function keyOf(user) {
    const kp = await getKey(ori + '/' + user);
    if (!kp) {
      status('This browser holds no key for ' + user + '. Use the browser you enrolled, or enroll this one with a new code.');
    }
    return kp;
  }

  const enroll = document.getElementById('enroll-form');
  if (enroll) {
    enroll.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      try {
        const user = enroll.elements.user.value.trim();
        const code = enroll.elements.code.value.trim();
        const kp = await crypto.subtle.generateKey(ALG, false, ['sign', 'verify']);
        const spki = await crypto.subtle.exportKey('spki', kp.publicKey);
        const proof = await crypto.subtle.sign(SIG, kp.privateKey, message(['alpr-console/v1 enroll', ori, user, code]));
        // Kept aside until the node accepts the enrollment: a refused attempt must not
        // replace the key an earlier enrollment made.
        await putKey('pending/' + ori + '/' + user, kp);
        enroll.elements.spki.value = hex(spki);
        enroll.elements.proof.value = hex(proof);
        enroll.submit();
      } catch (e) {
        status('Your browser could not make or keep a key (' + e + '). Use a current Chromium or Firefox over HTTPS.');
      }
    });
  }

  const enrolled = document.getElementById('enrolled');
  if (enrolled) {
    (async () => {
      const user = enrolled.dataset.user;
      const kp = await getKey('pending/' + ori + '/' + user);
      if (kp) {
        await putKey(ori + '/' + user, kp);
        await putKey('pending/' + ori + '/' + user, null);
      }
    })();
  }

  const signin = document.getElementById('signin-form');
  if (signin) {
    signin.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const user = signin.dataset.user;
      const kp = await keyOf(user);
      if (!kp) return;
      const sig = await crypto.subtle.sign(SIG, kp.privateKey, message(['alpr-console/v1 sign-in', ori, user, signin.dataset.challenge]));
      signin.elements.sig.value = hex(sig);
      signin.submit();
    });
  }

  // What the browser itself reads in the bytes it is about to sign (the envelope's
  // signing input: domain, payload type, the Query's protobuf encoding), shown beside the
  // node's summary so a node cannot show one query and have another signed.
  function readQuery(input) {
    const text = new TextDecoder();
    const domain = 'alpr-fed/v1\u0000';
    if (text.decode(input.slice(0, domain.length)) !== domain) return null;
    let i = domain.length;
    const end = input.indexOf(0, i);
    if (end < 0 || text.decode(input.slice(i, end)) !== 'alpr.v1.Query') return null;
    i = end + 1;
    const varint = () => {
      let v = 0; let mul = 1; let b;
      do { b = input[i++]; if (b === undefined) throw new Error('truncated'); v += (b & 0x7f) * mul; mul *= 128; } while (b & 0x80);
      return v;
    };
    const q = { targets: [] };
    const names = { 2: 'user', 3: 'ori', 4: 'plate', 7: 'purpose', 8: 'case', 9: 'reason', 10: 'warrant', 15: 'state', 17: 'shape' };
    const times = { 5: 'from', 6: 'to', 13: 'issued', 14: 'expires' };
    while (i < input.length) {
      const key = varint(); const field = Math.floor(key / 8); const wire = key % 8;
      if (wire === 0) { const v = varint(); if (times[field]) q[times[field]] = v; }
      else if (wire === 2) {
        const len = varint(); const bytes = input.slice(i, i + len); i += len;
        if (field === 12) q.targets.push(text.decode(bytes));
        else if (names[field]) q[names[field]] = text.decode(bytes);
      } else if (wire === 1) { i += 8; } else if (wire === 5) { i += 4; } else { return null; }
    }
    return q;
  }
  const utc = (t) => new Date(t * 1000).toISOString().slice(0, 16).replace('T', ' ') + ' UTC';

  const sign = document.getElementById('sign-form');
  if (sign) {
    const view = document.getElementById('signed-view');
    let q = null;
    try { q = readQuery(unhex(sign.dataset.signingInput)); } catch (e) { q = null; }
    if (!q || q.user !== sign.dataset.user) {
      status('What the node asks your browser to sign is not a query of yours. Nothing will be signed; tell your administrator.');
      sign.querySelector('button').disabled = true;
    } else if (view) {
      const rows = [
        ['Plate', (q.plate || '') + ' (' + (q.state || '') + ')' + (q.shape ? ' — ' + q.shape : '')],
        ['Window', utc(q.from || 0) + ' to ' + utc(q.to || 0)],
        ['Purpose', q.purpose || ''], ['Case', q.case || ''], ['Reason', q.reason || ''],
        ['Warrant', q.warrant || '—'], ['Agencies', q.targets.join(', ')],
        ['Signed as', q.user + ' of ' + q.ori], ['Valid until', utc(q.expires || 0)],
      ];
      const dl = document.createElement('dl');
      for (const [k, v] of rows) {
        const dt = document.createElement('dt'); dt.textContent = k;
        const dd = document.createElement('dd'); dd.textContent = v;
        dl.append(dt, dd);
      }
      view.append(dl);
      view.hidden = false;
    }
  }
  if (sign) {
    sign.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const kp = await keyOf(sign.dataset.user);
      if (!kp) return;
      const sig = await crypto.subtle.sign(SIG, kp.privateKey, unhex(sign.dataset.signingInput));
      sign.elements.sig.value = hex(sig);
      sign.querySelector('button').disabled = true;
      sign.submit();
    });
  }

  // An admin's agreement or revocation: signed as it is (the page shows its terms).
  const agreement = document.getElementById('agreement-form');
  if (agreement) {
    agreement.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const kp = await keyOf(agreement.dataset.user);
      if (!kp) return;
      const sig = await crypto.subtle.sign(SIG, kp.privateKey, unhex(agreement.dataset.signingInput));
      agreement.elements.sig.value = hex(sig);
      agreement.querySelector('button').disabled = true;
      agreement.submit();
    });
  }
  // A CSV file chosen for ingest is read here into the form's text (with its name).
  const ingestFile = document.getElementById('ingest-file');
  if (ingestFile) {
    ingestFile.addEventListener('change', async () => {
      const file = ingestFile.files[0];
      if (!file) return;
      const form = document.getElementById('ingest-form');
      form.elements.csv.value = await file.text();
      form.elements.filename.value = file.name;
    });
  }
  // An agreement file chosen for upload travels as hex in the form.
  const upload = document.getElementById('upload-form');
  if (upload) {
    upload.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const file = document.getElementById('agreement-file').files[0];
      if (!file) { status('Choose the agreement file.'); return; }
      upload.elements.file_hex.value = hex(await file.arrayBuffer());
      upload.submit();
    });
  }

  // The search form: which agencies' agreements cover the chosen purpose, and a reason
  // that says nothing is stopped before it is sent.
  const purpose = document.getElementById('purpose');
  const notePurpose = () => {
    const code = (purpose.value.trim().split(/\s/)[0] || '');
    document.querySelectorAll('ul.targets li').forEach((li) => {
      const covered = (li.dataset.purposes || '').split(' ').includes(code);
      li.querySelector('.purpose-note').textContent = code && !covered ? ' — does not cover purpose ' + code : '';
    });
  };
  if (purpose) { purpose.addEventListener('input', notePurpose); notePurpose(); }
  const reason = document.getElementById('reason');
  if (reason) {
    const vague = ['investigation', 'investigate', 'inv', 'follow-up', 'follow up', 'followup', 'case', 'lead', 'info', 'n/a'];
    reason.addEventListener('input', () => {
      const r = reason.value.trim().toLowerCase().replace(/[.!]+$/, '');
      reason.setCustomValidity(vague.includes(r) ? '"' + reason.value.trim() + '" is not a reason: say what happened and why this plate.' : '');
    });
  }

  // Sortable tables: a button in each column heading.
  document.querySelectorAll('table.sortable').forEach((t) => {
    t.querySelectorAll('thead th button').forEach((b, i) => {
      b.addEventListener('click', () => {
        const body = t.tBodies[0];
        const rows = Array.from(body.rows);
        const asc = b.dataset.dir !== 'asc';
        b.dataset.dir = asc ? 'asc' : 'desc';
        const key = (r) => {
          const c = r.cells[i];
          return c.dataset.sort !== undefined ? parseFloat(c.dataset.sort) : c.textContent;
        };
        rows.sort((x, y) => { const a = key(x); const z = key(y); return (a < z ? -1 : a > z ? 1 : 0) * (asc ? 1 : -1); });
        rows.forEach((r) => body.appendChild(r));
        t.querySelectorAll('thead th').forEach((th) => th.removeAttribute('aria-sort'));
        b.parentElement.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
      });
    });
  });
  // Times. The server writes every time in UTC; here they are shown in this browser's own
  // time zone (the UTC text stays as the tooltip), date-time fields are filled and read in
  // local time, and each is sent with its UTC equivalent in a hidden "<name>_utc" field,
  // which the server prefers (without this script, fields are read as UTC, as labelled).
  const zone = (Intl.DateTimeFormat().resolvedOptions().timeZone) || 'local time';
  const pad = (n) => String(n).padStart(2, '0');
  const localText = (d) => d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) +
    ' ' + pad(d.getHours()) + ':' + pad(d.getMinutes());
  const zoneName = (d) => {
    const part = new Intl.DateTimeFormat(undefined, { timeZoneName: 'short' })
      .formatToParts(d).find((x) => x.type === 'timeZoneName');
    return part ? part.value : zone;
  };
  document.querySelectorAll('time[datetime]').forEach((t) => {
    const d = new Date(t.getAttribute('datetime'));
    if (isNaN(d.getTime())) return;
    t.title = t.textContent;
    t.textContent = localText(d) + ' ' + zoneName(d);
  });
  document.querySelectorAll('span.tz').forEach((z) => { z.textContent = zone; });
  document.querySelectorAll('input[type="datetime-local"][data-utc]').forEach((i) => {
    const d = new Date(i.value + 'Z');
    if (i.value && !isNaN(d.getTime())) i.value = localText(d).replace(' ', 'T');
  });
  document.querySelectorAll('form').forEach((f) => {
    const fields = f.querySelectorAll('input[type="datetime-local"]');
    if (!fields.length) return;
    // In the capture phase: before any other handler of this form's submit.
    f.addEventListener('submit', () => {
      fields.forEach((i) => {
        let twin = f.querySelector('input[type="hidden"][name="' + i.name + '_utc"]');
        if (!twin) {
          twin = document.createElement('input');
          twin.type = 'hidden';
          twin.name = i.name + '_utc';
          f.appendChild(twin);
        }
        const d = new Date(i.value); // a datetime-local value is read in local time
        twin.value = i.value && !isNaN(d.getTime()) ? d.toISOString() : '';
      });
    }, true);
  });
})();
