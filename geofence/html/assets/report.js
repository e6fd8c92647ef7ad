/* geofence HTML report (issue #9): decodes the embedded data, draws the map (Leaflet, Canvas
   2D, no tiles), the charts (plain SVG) and the table, and keeps them in step with the filters.
   Every text from the data is set with textContent (never innerHTML): site names, plates and
   file names are untrusted input. The page sets <html data-ready="true"> once drawn. */
(function () {
  'use strict';
  var doc = document;
  var SVGNS = 'http://www.w3.org/2000/svg';
  var DATA = JSON.parse(doc.getElementById('gf-data').textContent);
  var NF = new Intl.NumberFormat('en-US');
  var PAGE_SIZE = 25;
  var MAX_CIRCLES = 400;
  var TOP = 15;
  var WEEKDAYS = ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday'];
  var HEAT = ['#ffffff', '#deebf7', '#9ecae1', '#6baed6', '#3182bd', '#08519c'];
  var GRID = ['#fde725', '#7ad151', '#22a884', '#2a788e', '#414487', '#440154'];

  function $(id) { return doc.getElementById(id); }
  function fmt(n) { return NF.format(n); }
  function el(tag, attrs, text) {
    var e = doc.createElement(tag);
    if (attrs) { for (var k in attrs) { if (Object.prototype.hasOwnProperty.call(attrs, k)) { e.setAttribute(k, attrs[k]); } } }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function svg(tag, attrs, text) {
    var e = doc.createElementNS(SVGNS, tag);
    if (attrs) { for (var k in attrs) { if (Object.prototype.hasOwnProperty.call(attrs, k)) { e.setAttribute(k, attrs[k]); } } }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }
  function cell(tr, text, cls, th) {
    var c = el(th ? 'th' : 'td', cls ? { 'class': cls } : null, text);
    if (th) { c.setAttribute('scope', 'row'); }
    tr.appendChild(c);
    return c;
  }

  /* ------------------------------------------------------------ decoding (see _encode.py) */
  function bytes(s) {
    var bin = atob(s), n = bin.length, u = new Uint8Array(n);
    for (var i = 0; i < n; i++) { u[i] = bin.charCodeAt(i); }
    return u;
  }
  function typed(enc, signed) {
    var u = bytes(enc.b);
    if (enc.w === 1) { return signed ? new Int8Array(u.buffer) : u; }
    if (enc.w === 3) {
      var n3 = u.length / 3, o3 = new Uint32Array(n3);
      for (var q = 0; q < n3; q++) { o3[q] = u[3 * q] | (u[3 * q + 1] << 8) | (u[3 * q + 2] << 16); }
      return o3;
    }
    if (enc.w === 2) { return signed ? new Int16Array(u.buffer) : new Uint16Array(u.buffer); }
    if (enc.w === 4) { return signed ? new Int32Array(u.buffer) : new Uint32Array(u.buffer); }
    return new Float64Array(u.buffer);
  }
  function numbers(enc, n) {
    var out, i;
    if (!enc || enc.k === 'null') { out = new Float64Array(n); out.fill(NaN); return out; }
    if (enc.k === 'f64') { return typed({ w: 8, b: enc.b }); }
    if (enc.k === 'int' || enc.k === 'itext') { enc = Object.assign({}, enc, { k: 'int' }); }
    var raw = typed(enc, false);
    out = new Float64Array(raw.length);
    if (enc.delta) {
      var acc = enc.base;
      for (i = 0; i < raw.length; i++) { acc += raw[i]; out[i] = acc; }
    } else {
      var nul = enc.nul === undefined ? -1 : enc.nul;
      for (i = 0; i < raw.length; i++) { out[i] = raw[i] === nul ? NaN : raw[i] + enc.base; }
    }
    if (enc.k === 'fix' && enc.d > 0) {
      var scale = Math.pow(10, enc.d);
      for (i = 0; i < out.length; i++) { out[i] = out[i] / scale; }
    }
    return out;
  }
  var HEX = [];
  for (var h = 0; h < 256; h++) { HEX.push((h < 16 ? '0' : '') + h.toString(16)); }
  function dictValues(enc) {
    if (!enc.hex) { return enc.v; }
    var b = bytes(enc.hex.b), w = enc.hex.hex, vals = [];
    for (var i = 0; i + w <= b.length; i += w) {
      var s = '';
      for (var j = 0; j < w; j++) { s += HEX[b[i + j]]; }
      vals.push(s);
    }
    if (enc.hasnull) { vals.push(null); }
    return vals;
  }
  function textOfNumber(v) { return isNaN(v) ? '' : String(v); }
  function isoUtc(t) { return new Date(t * 1000).toISOString().replace('.000Z', 'Z'); }
  function isoLocal(t) { return new Date(t * 1000).toISOString().replace('.000Z', '').replace('T', ' '); }
  function dayText(day) { return new Date(day * 86400000).toISOString().slice(0, 10); }

  /* ------------------------------------------------------------ categories and sites */
  var CATS = DATA.cats;
  var nCat = CATS.length;
  var META = DATA.meta;
  var S = DATA.sites;
  var nSites = S.n;
  var siteCat = S.n ? typed(S.cat) : new Uint8Array(0);
  var siteKind = S.n ? typed(S.kind) : new Uint8Array(0);
  var siteAx = numbers(S.ax, nSites), siteAy = numbers(S.ay, nSites);
  var siteR = numbers(S.r_m, nSites);
  var siteName = S.name, siteId = S.id;
  var siteFlagged = S.flagged ? numbers(S.flagged, nSites) : null;
  var siteMinD = S.min_d ? numbers(S.min_d, nSites) : null;

  function mercX(lon) { return lon / 360 + 0.5; }
  function mercY(lat) {
    var p = Math.max(Math.min(lat, 85.0511287798), -85.0511287798) * Math.PI / 180;
    return 0.5 - Math.log(Math.tan(Math.PI / 4 + p / 2)) / (2 * Math.PI);
  }
  function rings(pack) {
    /* counts per site and per ring, offsets from the site anchor -> mercator vertices */
    var rs = typed(pack.rs), rc = typed(pack.rc), xy = typed(pack.xy, true);
    var siteStart = new Uint32Array(nSites + 1), ringStart = new Uint32Array(rc.length + 1);
    var s, r, k;
    for (s = 0; s < nSites; s++) { siteStart[s + 1] = siteStart[s] + (s < rs.length ? rs[s] : 0); }
    for (r = 0; r < rc.length; r++) { ringStart[r + 1] = ringStart[r] + rc[r]; }
    var mx = new Float64Array(xy.length / 2), my = new Float64Array(xy.length / 2);
    var bbox = new Float64Array(nSites * 4);
    for (s = 0; s < nSites; s++) {
      var x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
      for (r = siteStart[s]; r < siteStart[s + 1]; r++) {
        for (k = ringStart[r]; k < ringStart[r + 1]; k++) {
          var X = mercX((siteAx[s] + xy[2 * k]) / 1e6), Y = mercY((siteAy[s] + xy[2 * k + 1]) / 1e6);
          mx[k] = X; my[k] = Y;
          if (X < x0) { x0 = X; } if (X > x1) { x1 = X; } if (Y < y0) { y0 = Y; } if (Y > y1) { y1 = Y; }
        }
      }
      bbox[4 * s] = x0; bbox[4 * s + 1] = y0; bbox[4 * s + 2] = x1; bbox[4 * s + 3] = y1;
    }
    return { siteStart: siteStart, ringStart: ringStart, mx: mx, my: my, bbox: bbox };
  }
  var SR = rings(S.rings);
  var siteMx = new Float64Array(nSites), siteMy = new Float64Array(nSites), siteLat = new Float64Array(nSites);
  for (var si = 0; si < nSites; si++) {
    siteLat[si] = siteAy[si] / 1e6;
    siteMx[si] = mercX(siteAx[si] / 1e6); siteMy[si] = mercY(siteLat[si]);
  }
  function fenceRadius(s) { return siteR[s] + CATS[siteCat[s]].buffer_m; }
  function siteLabel(s) { return (siteName[s] || '(no name)') + ' (' + siteId[s] + ')'; }

  /* ------------------------------------------------------------ reads (points mode) */
  var POINTS = DATA.mode === 'points';
  var R = DATA.reads;
  var N = POINTS ? R.n : 0;
  var readSite, readCat, readT, readLocal, readDay, rLon, rLat, rMx, rMy, columns = [];
  if (POINTS) {
    readSite = typed(R.site);
    rLon = numbers(R.lon, N); rLat = numbers(R.lat, N);
    readT = numbers(R.t, N);
    var toff = R.toff ? typed(R.toff) : null;
    readLocal = new Float64Array(N); readDay = new Float64Array(N); readCat = new Uint8Array(N);
    rMx = new Float64Array(N); rMy = new Float64Array(N);
    for (var i = 0; i < N; i++) {
      readCat[i] = siteCat[readSite[i]];
      readLocal[i] = readT[i] + (toff ? R.offsets[toff[i]] : (R.offsets[0] || 0));
      readDay[i] = Math.floor(readLocal[i] / 86400);
      rMx[i] = mercX(rLon[i]); rMy[i] = mercY(rLat[i]);
    }
    columns = buildColumns(R.cols);
  }

  function buildColumns(specs) {
    var cols = [], keyCodes = { site_id: readSite };
    var pending = [];
    specs.forEach(function (spec) {
      var c = { name: spec.name, label: spec.label || spec.name, enc: spec.enc };
      cols.push(c);
      if (spec.enc.k === 'dict' && spec.enc.by) { pending.push(c); } else { decodeColumn(c, keyCodes); }
      if (c.codes && c.name === 'camera_id') { keyCodes.camera_id = c.codes; }
    });
    pending.forEach(function (c) { decodeColumn(c, keyCodes); });
    return cols;
  }
  function decodeColumn(c, keyCodes) {
    var enc = c.enc, k = enc.k;
    c.numeric = false;
    c.align = ['int', 'fix', 'f64', 'lon', 'lat'].indexOf(k) >= 0 ? 'num' : null;
    if (k === 'null') { c.text = function () { return ''; }; c.key = c.text; return; }
    if (k === 'int' || k === 'fix' || k === 'f64') {
      var v = numbers(enc, N);
      c.numeric = true; c.values = v;
      c.text = function (i) { return textOfNumber(v[i]); };
      c.key = function (i) { return v[i]; };
      return;
    }
    if (k === 'dict') {
      var vals = dictValues(enc), codes;
      if (enc.by) {
        var map = numbers(enc.map, 0), key = keyCodes[enc.by];
        codes = new Uint32Array(N);
        for (var i = 0; i < N; i++) { codes[i] = map[key[i]]; }
      } else {
        codes = typed(enc.codes);
      }
      c.codes = codes; c.dict = vals;
      c.text = function (i) { var s = vals[codes[i]]; return s === null || s === undefined ? '' : s; };
      c.key = function (i) { return vals[codes[i]] === null ? Infinity : codes[i]; };
      c.numeric = true; /* codes sort as the sorted dictionary */
      return;
    }
    if (k === 'itext') {
      var iv = numbers(enc, N);
      c.text = function (i) { return isNaN(iv[i]) ? '' : String(iv[i]); };
      c.key = function (i) { return iv[i]; };
      c.numeric = true;
      return;
    }
    if (k === 'fw') {
      var w = enc.w, str = enc.s, nulls = new Set(enc.nul ? Array.from(numbers(enc.nul, 0)) : []);
      c.text = function (i) { return nulls.has(i) ? '' : str.substr(i * w, w); };
      c.key = c.text;
      return;
    }
    if (k === 'str') {
      var list = enc.v;
      c.text = function (i) { var s = list[i]; return s === null || s === undefined ? '' : String(s); };
      c.key = c.text;
      return;
    }
    if (k === 'site') {
      var rank = siteRank();
      c.text = function (i) { return siteId[readSite[i]]; };
      c.key = function (i) { return rank[readSite[i]]; };
      c.numeric = true;
      return;
    }
    if (k === 'sitename') {
      c.text = function (i) { return siteName[readSite[i]] || ''; };
      c.key = c.text;
      return;
    }
    if (k === 'ts') {
      c.text = function (i) { return isNaN(readT[i]) ? '' : isoUtc(readT[i]); };
      c.key = function (i) { return readT[i]; };
      c.numeric = true;
      return;
    }
    if (k === 'local') {
      c.text = function (i) { return isNaN(readLocal[i]) ? '' : isoLocal(readLocal[i]); };
      c.key = function (i) { return readLocal[i]; };
      c.numeric = true;
      return;
    }
    if (k === 'lon' || k === 'lat') {
      var arr = k === 'lon' ? rLon : rLat;
      c.text = function (i) { return textOfNumber(arr[i]); };
      c.key = function (i) { return arr[i]; };
      c.numeric = true;
      return;
    }
    if (k === 'matches') {
      var m = matchesOf(enc);
      c.text = m;
      c.key = m;
      return;
    }
    throw new Error('unknown column encoding ' + k);
  }
  var _rank = null;
  function siteRank() {
    if (_rank) { return _rank; }
    var order = [];
    for (var s = 0; s < nSites; s++) { order.push(s); }
    order.sort(function (a, b) { return siteId[a] < siteId[b] ? -1 : siteId[a] > siteId[b] ? 1 : 0; });
    _rank = new Uint32Array(nSites);
    order.forEach(function (s, r) { _rank[s] = r; });
    return _rank;
  }
  function matchesOf(enc) {
    /* extra matches of reads with several, after the nearest (the read's own site and distance) */
    var rows = numbers(enc.rows, 0), cnt = typed(enc.cnt), ms = typed(enc.site), md = numbers(enc.d, 0);
    var extra = new Map(), p = 0;
    for (var j = 0; j < rows.length; j++) { extra.set(rows[j], [p, p + cnt[j]]); p += cnt[j]; }
    var distCol = null;
    return function (i) {
      if (distCol === null) { distCol = columns.filter(function (c) { return c.name === 'distance_m'; })[0] || false; }
      var parts = [];
      var one = function (s, d) { return siteId[s] + ' (' + CATS[siteCat[s]].id + ') ' + textOfNumber(d) + ' m'; };
      if (enc.first) { parts.push(one(readSite[i], distCol ? distCol.values[i] : NaN)); }
      var x = extra.get(i);
      if (x) { for (var q = x[0]; q < x[1]; q++) { parts.push(one(ms[q], md[q])); } }
      return parts.join('; ');
    };
  }

  /* ------------------------------------------------------------ aggregated data (grid mode) */
  var AGG = DATA.agg;
  var gridLevels = [];
  if (!POINTS) {
    gridLevels = AGG.levels.map(function (L) {
      var n = L.n.k === 'null' ? 0 : typed(L.cat).length;
      return { g: L.g, x: numbers(L.x, n), y: numbers(L.y, n), cat: typed(L.cat), n: numbers(L.n, n), len: n };
    });
  }

  /* ------------------------------------------------------------ filters */
  var F = { cat: -1, site: -1, agency: -1, camera: -1, from: NaN, to: NaN };
  var sel = new Int32Array(0);
  var colAgency = columns.filter(function (c) { return c.name === 'agency'; })[0];
  var colCamera = columns.filter(function (c) { return c.name === 'camera_id'; })[0];
  function labelCodes(col) {
    /* codes and labels of a column for a filter / chart, whatever its encoding */
    if (!col) { return null; }
    if (col.codes) {
      return { codes: col.codes, labels: col.dict.map(function (v) { return v === null ? '(none)' : v; }) };
    }
    var map = new Map(), labels = [], codes = new Uint32Array(N);
    for (var i = 0; i < N; i++) {
      var t = col.text(i) || '(none)';
      var c = map.get(t);
      if (c === undefined) { c = labels.length; labels.push(t); map.set(t, c); }
      codes[i] = c;
    }
    return { codes: codes, labels: labels };
  }
  var AG = POINTS ? labelCodes(colAgency) : null;
  var CAM = POINTS ? labelCodes(colCamera) : null;

  function applyFilters() {
    if (POINTS) {
      var out = new Int32Array(N), n = 0;
      for (var i = 0; i < N; i++) {
        if (F.cat >= 0 && readCat[i] !== F.cat) { continue; }
        if (F.site >= 0 && readSite[i] !== F.site) { continue; }
        if (F.agency >= 0 && (!AG || AG.codes[i] !== F.agency)) { continue; }
        if (F.camera >= 0 && (!CAM || CAM.codes[i] !== F.camera)) { continue; }
        if (!isNaN(F.from) && !(readDay[i] >= F.from)) { continue; }
        if (!isNaN(F.to) && !(readDay[i] <= F.to)) { continue; }
        out[n++] = i;
      }
      sel = out.slice(0, n);
    }
    updateStatus();
    redrawMap();
    updateCharts();
    table.reset();
  }
  function filterText() {
    var parts = [];
    if (F.cat >= 0) { parts.push('category ' + CATS[F.cat].label); }
    if (F.site >= 0) { parts.push('site ' + siteLabel(F.site)); }
    if (F.agency >= 0) { parts.push('agency ' + AG.labels[F.agency]); }
    if (F.camera >= 0) { parts.push('camera ' + CAM.labels[F.camera]); }
    if (!isNaN(F.from)) { parts.push('from ' + dayText(F.from)); }
    if (!isNaN(F.to)) { parts.push('to ' + dayText(F.to)); }
    return parts.length ? ' (' + parts.join(', ') + ')' : ' (no filter)';
  }
  function updateStatus() {
    var total = META.counts.reads_flagged;
    var shown = POINTS ? sel.length : aggTotal();
    $('filter-status').textContent = 'Showing ' + fmt(shown) + ' of ' + fmt(total) + ' flagged reads' + filterText() + '.';
    $('filter-status').setAttribute('data-shown', String(shown));
  }
  function aggTotal() {
    var t = 0;
    for (var s = 0; s < nSites; s++) {
      if ((F.cat < 0 || siteCat[s] === F.cat) && (F.site < 0 || s === F.site)) { t += siteFlagged[s]; }
    }
    return t;
  }
  function option(select, value, text) { select.appendChild(el('option', { value: String(value) }, text)); }
  function setupFilters() {
    var fc = $('f-category'), fs = $('f-site'), fa = $('f-agency'), fm = $('f-camera');
    var catCount = new Float64Array(nCat), siteCount = new Float64Array(nSites), s;
    if (POINTS) {
      for (var i = 0; i < N; i++) { catCount[readCat[i]]++; siteCount[readSite[i]]++; }
    } else {
      for (s = 0; s < nSites; s++) { siteCount[s] = siteFlagged[s]; catCount[siteCat[s]] += siteFlagged[s]; }
    }
    option(fc, -1, 'All categories');
    CATS.forEach(function (c, k) { if (catCount[k] > 0) { option(fc, k, c.label + ' (' + fmt(catCount[k]) + ')'); } });
    option(fs, -1, 'All sites');
    var sites = [];
    for (s = 0; s < nSites; s++) { if (siteCount[s] > 0) { sites.push(s); } }
    sites.sort(function (a, b) { var x = siteLabel(a), y = siteLabel(b); return x < y ? -1 : x > y ? 1 : 0; });
    sites.forEach(function (s2) { option(fs, s2, siteLabel(s2) + ' (' + fmt(siteCount[s2]) + ')'); });
    function fill(select, lc, allText) {
      option(select, -1, allText);
      if (!lc) { return; }
      var cnt = new Float64Array(lc.labels.length);
      for (var i = 0; i < N; i++) { cnt[lc.codes[i]]++; }
      var order = lc.labels.map(function (_, k) { return k; }).filter(function (k) { return cnt[k] > 0; });
      order.sort(function (a, b) { return lc.labels[a] < lc.labels[b] ? -1 : lc.labels[a] > lc.labels[b] ? 1 : 0; });
      order.forEach(function (k) { option(select, k, lc.labels[k] + ' (' + fmt(cnt[k]) + ')'); });
    }
    fill(fa, AG, 'All agencies');
    fill(fm, CAM, 'All cameras');
    var ff = $('f-from'), ft = $('f-to');
    if (POINTS) {
      var lo = Infinity, hi = -Infinity;
      for (var j = 0; j < N; j++) { if (!isNaN(readDay[j])) { if (readDay[j] < lo) { lo = readDay[j]; } if (readDay[j] > hi) { hi = readDay[j]; } } }
      if (lo <= hi) { ff.min = ft.min = dayText(lo); ff.max = ft.max = dayText(hi); }
      else { ff.disabled = ft.disabled = true; }
    } else {
      [fa, fm, ff, ft].forEach(function (x) { x.disabled = true; });
    }
    function num(v) { return v === '' ? -1 : Number(v); }
    function day(v) { if (!v) { return NaN; } var p = v.split('-'); return Date.UTC(+p[0], +p[1] - 1, +p[2]) / 86400000; }
    fc.addEventListener('change', function () { F.cat = num(fc.value); applyFilters(); });
    fs.addEventListener('change', function () { F.site = num(fs.value); applyFilters(); if (F.site >= 0) { zoomToSite(F.site); } });
    fa.addEventListener('change', function () { F.agency = num(fa.value); applyFilters(); });
    fm.addEventListener('change', function () { F.camera = num(fm.value); applyFilters(); });
    ff.addEventListener('change', function () { F.from = day(ff.value); applyFilters(); });
    ft.addEventListener('change', function () { F.to = day(ft.value); applyFilters(); });
    $('filter-form').addEventListener('reset', function () {
      F = { cat: -1, site: -1, agency: -1, camera: -1, from: NaN, to: NaN };
      setTimeout(applyFilters, 0);
    });
    $('filter-form').addEventListener('submit', function (e) { e.preventDefault(); });
  }

  /* ------------------------------------------------------------ map */
  var mapEl = $('map');
  var map = L.map(mapEl, {
    preferCanvas: true, zoomAnimation: false, fadeAnimation: false, markerZoomAnimation: false,
    zoomSnap: 0.25, zoomDelta: 1, minZoom: 1, maxZoom: 21, keyboard: true, attributionControl: true, worldCopyJump: false
  });
  map.attributionControl.setPrefix('Leaflet');
  L.control.scale({ metric: true, imperial: true, maxWidth: 160 }).addTo(map);
  var TextAttribution = L.Control.extend({
    options: { position: 'bottomright' },
    onAdd: function () {
      var d = L.DomUtil.create('div', 'leaflet-control-attribution leaflet-control');
      d.textContent = this.options.text;
      return d;
    }
  });
  if (DATA.context) { new TextAttribution({ text: DATA.context.attribution, position: 'bottomleft' }).addTo(map); }

  var CanvasLayer = L.Layer.extend({
    initialize: function (draw, pane) { this._draw = draw; this._paneName = pane; },
    onAdd: function (m) {
      this._canvas = L.DomUtil.create('canvas', 'gf-canvas');
      this._canvas.setAttribute('aria-hidden', 'true');
      m.getPane(this._paneName).appendChild(this._canvas);
      m.on('moveend resize', this.schedule, this);
    },
    onRemove: function (m) { L.DomUtil.remove(this._canvas); m.off('moveend resize', this.schedule, this); },
    schedule: function () {
      /* map events come in bursts (zoomend, moveend, resize): draw once per frame */
      var self = this;
      if (self._pending) { return; }
      self._pending = true;
      window.requestAnimationFrame(function () { self._pending = false; self.redraw(); });
    },
    redraw: function () {
      if (!this._map) { return; }
      var m = this._map, size = m.getSize(), c = this._canvas, dpr = window.devicePixelRatio || 1;
      c.width = Math.max(1, Math.round(size.x * dpr)); c.height = Math.max(1, Math.round(size.y * dpr));
      c.style.width = size.x + 'px'; c.style.height = size.y + 'px';
      L.DomUtil.setPosition(c, m.containerPointToLayerPoint([0, 0]));
      var ctx = c.getContext('2d');
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, size.x, size.y);
      var o = m.getPixelBounds().min, ctr = m.getCenter();
      mapEl.setAttribute('data-zoom', String(m.getZoom()));
      mapEl.setAttribute('data-center', ctr.lat.toFixed(6) + ',' + ctr.lng.toFixed(6));
      this._draw(ctx, m.options.crs.scale(m.getZoom()), o.x, o.y, size.x, size.y);
    }
  });
  ['gfContext', 'gfSites', 'gfData'].forEach(function (name, k) { map.createPane(name).style.zIndex = String(350 + 50 * k); });

  var SHAPES = {
    circle: function (c, x, y, r) { c.moveTo(x + r, y); c.arc(x, y, r, 0, 2 * Math.PI); },
    square: function (c, x, y, r) { var s = r * 0.9; c.rect(x - s, y - s, 2 * s, 2 * s); },
    triangle: function (c, x, y, r) { var s = r * 1.25; c.moveTo(x, y - s); c.lineTo(x + s, y + s * 0.75); c.lineTo(x - s, y + s * 0.75); c.closePath(); },
    down: function (c, x, y, r) { var s = r * 1.25; c.moveTo(x, y + s); c.lineTo(x + s, y - s * 0.75); c.lineTo(x - s, y - s * 0.75); c.closePath(); },
    diamond: function (c, x, y, r) { var s = r * 1.3; c.moveTo(x, y - s); c.lineTo(x + s, y); c.lineTo(x, y + s); c.lineTo(x - s, y); c.closePath(); },
    plus: function (c, x, y, r) {
      var a = r * 1.2, b = r * 0.45;
      c.moveTo(x - b, y - a); c.lineTo(x + b, y - a); c.lineTo(x + b, y - b); c.lineTo(x + a, y - b); c.lineTo(x + a, y + b); c.lineTo(x + b, y + b);
      c.lineTo(x + b, y + a); c.lineTo(x - b, y + a); c.lineTo(x - b, y + b); c.lineTo(x - a, y + b); c.lineTo(x - a, y - b); c.lineTo(x - b, y - b); c.closePath();
    }
  };
  function shapeSvg(shape, colour, r) {
    /* the same outline as SHAPES, recorded as an SVG path for legends */
    var d = [], P = {
      moveTo: function (x, y) { d.push('M' + x.toFixed(2) + ' ' + y.toFixed(2)); },
      lineTo: function (x, y) { d.push('L' + x.toFixed(2) + ' ' + y.toFixed(2)); },
      closePath: function () { d.push('Z'); },
      rect: function (x, y, w, hh) { d.push('M' + x + ' ' + y + 'h' + w + 'v' + hh + 'h' + (-w) + 'Z'); },
      arc: function (x, y, rr) { d.push('M' + (x - rr) + ' ' + y + 'a' + rr + ' ' + rr + ' 0 1 0 ' + 2 * rr + ' 0a' + rr + ' ' + rr + ' 0 1 0 ' + (-2 * rr) + ' 0'); }
    };
    SHAPES[shape](P, 8, 8, r);
    var s = svg('svg', { width: '16', height: '16', viewBox: '0 0 16 16', 'aria-hidden': 'true', focusable: 'false' });
    s.appendChild(svg('path', { d: d.join(''), fill: colour, stroke: '#1a1a1a', 'stroke-width': '1' }));
    return s;
  }

  function metresPerPixel(lat, scale) { return 40075016.686 * Math.cos(lat * Math.PI / 180) / scale; }
  function ringPath(ctx, R2, s, scale, ox, oy) {
    for (var r = R2.siteStart[s]; r < R2.siteStart[s + 1]; r++) {
      var k0 = R2.ringStart[r], k1 = R2.ringStart[r + 1];
      if (k1 <= k0) { continue; }
      ctx.moveTo(R2.mx[k0] * scale - ox, R2.my[k0] * scale - oy);
      for (var k = k0 + 1; k < k1; k++) { ctx.lineTo(R2.mx[k] * scale - ox, R2.my[k] * scale - oy); }
      if (siteKind[s] === 1) { ctx.closePath(); }
    }
  }
  function inView(R2, s, scale, ox, oy, W, H, pad) {
    var b = R2.bbox;
    return !(b[4 * s + 2] * scale - ox < -pad || b[4 * s] * scale - ox > W + pad || b[4 * s + 3] * scale - oy < -pad || b[4 * s + 1] * scale - oy > H + pad);
  }
  var fenceCanvas = doc.createElement('canvas'), edgeCanvas = doc.createElement('canvas');
  function siteReachPx(s, scale) { return fenceRadius(s) / metresPerPixel(siteLat[s], scale); }
  function drawSites(ctx, scale, ox, oy, W, H) {
    var s, dpr = window.devicePixelRatio || 1, cw = ctx.canvas.width, chh = ctx.canvas.height;
    /* 1. every fence as a filled shape: the site grown by its distance (a disc for points;
       areas filled and stroked 2 x buffer wide with round joins; lines stroked) */
    fenceCanvas.width = edgeCanvas.width = cw; fenceCanvas.height = edgeCanvas.height = chh;
    var f = fenceCanvas.getContext('2d');
    f.setTransform(dpr, 0, 0, dpr, 0, 0);
    f.fillStyle = f.strokeStyle = '#000000'; f.lineJoin = 'round'; f.lineCap = 'round';
    f.beginPath();
    for (s = 0; s < nSites; s++) {
      if (siteKind[s] !== 0) { continue; }
      var rf = siteReachPx(s, scale), x = siteMx[s] * scale - ox, y = siteMy[s] * scale - oy;
      if (x + rf < 0 || x - rf > W || y + rf < 0 || y - rf > H) { continue; }
      if (rf < 1) { f.rect(x - 1, y - 1, 2, 2); } else { f.moveTo(x + rf, y); f.arc(x, y, rf, 0, 2 * Math.PI); }
    }
    f.fill();
    for (s = 0; s < nSites; s++) {
      if (siteKind[s] === 0) { continue; }
      var reach = siteReachPx(s, scale), b = SR.bbox;
      if (!inView(SR, s, scale, ox, oy, W, H, reach + 2)) { continue; }
      var bw = (b[4 * s + 2] - b[4 * s]) * scale, bh = (b[4 * s + 3] - b[4 * s + 1]) * scale;
      if (bw + 2 * reach < 3 && bh + 2 * reach < 3) {
        /* smaller than a few pixels: a square is as good as the shape */
        var cx = (b[4 * s] + b[4 * s + 2]) / 2 * scale - ox, cy = (b[4 * s + 1] + b[4 * s + 3]) / 2 * scale - oy, hw = Math.max(1, bw / 2 + reach);
        f.fillRect(cx - hw, cy - hw, 2 * hw, 2 * hw);
        continue;
      }
      f.beginPath(); ringPath(f, SR, s, scale, ox, oy);
      if (siteKind[s] === 1) { f.fill('evenodd'); }
      f.lineWidth = Math.max(2 * reach, 1); f.stroke();
    }
    /* 2. the outline of their union: the mask moved one or two pixels each way, less the mask */
    var e = edgeCanvas.getContext('2d'), d = Math.max(1, Math.round(1.5 * dpr));
    e.setTransform(1, 0, 0, 1, 0, 0);
    e.drawImage(fenceCanvas, d, 0); e.drawImage(fenceCanvas, -d, 0); e.drawImage(fenceCanvas, 0, d); e.drawImage(fenceCanvas, 0, -d);
    e.globalCompositeOperation = 'destination-out'; e.drawImage(fenceCanvas, 0, 0);
    e.globalCompositeOperation = 'source-in'; e.fillStyle = '#333333'; e.fillRect(0, 0, cw, chh);
    e.globalCompositeOperation = 'source-over';
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.globalAlpha = 0.08; ctx.drawImage(fenceCanvas, 0, 0);
    ctx.globalAlpha = 1; ctx.drawImage(edgeCanvas, 0, 0);
    ctx.restore();
    /* 3. sites: filled with the category colour, thin dark outline */
    for (var c = 0; c < nCat; c++) {
      ctx.beginPath();
      var any = false;
      for (s = 0; s < nSites; s++) {
        if (siteCat[s] !== c) { continue; }
        if (siteKind[s] === 0) {
          var rp = Math.max(siteR[s] / metresPerPixel(siteLat[s], scale), 2.5);
          var px = siteMx[s] * scale - ox, py = siteMy[s] * scale - oy;
          if (px + rp < 0 || px - rp > W || py + rp < 0 || py - rp > H) { continue; }
          ctx.moveTo(px + rp, py); ctx.arc(px, py, rp, 0, 2 * Math.PI);
          any = true;
        } else if (siteKind[s] === 1 && inView(SR, s, scale, ox, oy, W, H, 2)) {
          var bb = SR.bbox;
          if ((bb[4 * s + 2] - bb[4 * s]) * scale < 3 && (bb[4 * s + 3] - bb[4 * s + 1]) * scale < 3) {
            ctx.rect(bb[4 * s] * scale - ox - 1, bb[4 * s + 1] * scale - oy - 1, 3, 3);
          } else {
            ringPath(ctx, SR, s, scale, ox, oy);
          }
          any = true;
        }
      }
      if (!any) { continue; }
      ctx.globalAlpha = 0.55; ctx.fillStyle = CATS[c].colour; ctx.fill('evenodd');
      ctx.globalAlpha = 1; ctx.lineWidth = 0.8; ctx.strokeStyle = '#1a1a1a'; ctx.stroke();
    }
    for (s = 0; s < nSites; s++) {
      /* lines (event routes) stroked in their colour */
      if (siteKind[s] !== 2 || !inView(SR, s, scale, ox, oy, W, H, 2)) { continue; }
      ctx.beginPath(); ringPath(ctx, SR, s, scale, ox, oy);
      ctx.lineWidth = 3; ctx.strokeStyle = CATS[siteCat[s]].colour; ctx.stroke();
    }
    if (F.site >= 0) {
      s = F.site;
      ctx.beginPath();
      var hx = siteMx[s] * scale - ox, hy = siteMy[s] * scale - oy;
      var ext = 0;
      if (siteKind[s] !== 0) {
        var hb = SR.bbox;
        ext = Math.max(Math.abs(hb[4 * s] - siteMx[s]), Math.abs(hb[4 * s + 2] - siteMx[s]), Math.abs(hb[4 * s + 1] - siteMy[s]), Math.abs(hb[4 * s + 3] - siteMy[s])) * scale * Math.SQRT2;
      }
      var hr = Math.max(siteReachPx(s, scale) + ext, 8) + 4;
      ctx.moveTo(hx + hr, hy); ctx.arc(hx, hy, hr, 0, 2 * Math.PI);
      ctx.lineWidth = 3; ctx.strokeStyle = '#000000'; ctx.stroke();
    }
  }

  var drawn = { idx: new Int32Array(0), x: new Float32Array(0), y: new Float32Array(0), n: 0 };
  var sprites = {};
  function sprite(c, r, dpr) {
    /* each category's dot drawn once, then copied: far faster than a path per dot */
    var key = c + '|' + r + '|' + dpr;
    if (sprites[key]) { return sprites[key]; }
    var size = Math.ceil(2 * (r * 1.35 + 1.5)), cv = doc.createElement('canvas');
    cv.width = cv.height = Math.ceil(size * dpr);
    var g = cv.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.beginPath(); SHAPES[CATS[c].shape](g, size / 2, size / 2, r);
    g.fillStyle = CATS[c].colour; g.fill(); g.lineWidth = 0.8; g.strokeStyle = '#1a1a1a'; g.stroke();
    sprites[key] = { img: cv, size: size, half: size / 2 };
    return sprites[key];
  }
  function drawDots(ctx, scale, ox, oy, W, H) {
    var r = map.getZoom() >= 13 ? 4 : 3, pad = 6, n = 0, dpr = window.devicePixelRatio || 1, sp = [];
    for (var c = 0; c < nCat; c++) { sp.push(sprite(c, r, dpr)); }
    if (drawn.idx.length < sel.length) { drawn = { idx: new Int32Array(sel.length), x: new Float32Array(sel.length), y: new Float32Array(sel.length), n: 0 }; }
    for (var j = 0; j < sel.length; j++) {
      var i = sel[j], x = rMx[i] * scale - ox, y = rMy[i] * scale - oy;
      if (x < -pad || x > W + pad || y < -pad || y > H + pad) { continue; }
      var q = sp[readCat[i]];
      ctx.drawImage(q.img, x - q.half, y - q.half, q.size, q.size);
      drawn.idx[n] = i; drawn.x[n] = x; drawn.y[n] = y; n++;
    }
    drawn.n = n;
    mapEl.setAttribute('data-dots-drawn', String(n));
  }

  var gridState = { level: -1, sums: null };
  function gridLevelFor(scale) {
    var best = 0;
    for (var k = 0; k < gridLevels.length; k++) { if (scale / Math.pow(2, gridLevels[k].g) >= 3) { best = k; } }
    return best;
  }
  function gridCells(k) {
    /* cells of level k with their count under the category filter, merged across categories */
    var L = gridLevels[k], xs = [], ys = [], ns = [], last = -1;
    for (var j = 0; j < L.len; j++) {
      if (F.cat >= 0 && L.cat[j] !== F.cat) { continue; }
      var same = last >= 0 && xs[last] === L.x[j] && ys[last] === L.y[j];
      if (same) { ns[last] += L.n[j]; } else { xs.push(L.x[j]); ys.push(L.y[j]); ns.push(L.n[j]); last = xs.length - 1; }
    }
    var max = 0;
    for (j = 0; j < ns.length; j++) { if (ns[j] > max) { max = ns[j]; } }
    return { x: xs, y: ys, n: ns, max: max, breaks: breaksFor(max) };
  }
  function breaksFor(max) {
    /* six classes on a log scale from 1 to max */
    var b = [];
    for (var k = 1; k <= 6; k++) { b.push(Math.max(1, Math.round(Math.exp(Math.log(Math.max(max, 1)) * k / 6)))); }
    return b;
  }
  function classOf(v, breaks) { for (var k = 0; k < breaks.length; k++) { if (v <= breaks[k]) { return k; } } return breaks.length - 1; }
  function drawGrid(ctx, scale, ox, oy, W, H) {
    if (!gridLevels.length) { return; }
    var k = gridLevelFor(scale);
    if (gridState.level !== k || gridState.cat !== F.cat) { gridState = { level: k, cat: F.cat, cells: gridCells(k) }; updateLegend(); }
    var C = gridState.cells, g = gridLevels[k].g, size = scale / Math.pow(2, g), n = 0, total = 0;
    /* large cells (the finest level, zoomed in) are lighter so sites and fences show through */
    ctx.globalAlpha = size > 24 ? 0.45 : 0.72;
    for (var j = 0; j < C.x.length; j++) {
      var x = C.x[j] * size - ox, y = C.y[j] * size - oy;
      if (x + size < 0 || x > W || y + size < 0 || y > H) { continue; }
      ctx.fillStyle = GRID[classOf(C.n[j], C.breaks)];
      ctx.fillRect(x, y, Math.max(size, 1), Math.max(size, 1));
      n++; total += C.n[j];
    }
    ctx.globalAlpha = 1;
    /* per-site totals: open circles, area proportional to the count; only when few enough
       are in view to be told apart (MAX_CIRCLES), else they would hide the grid */
    var maxSite = 0, s, visible = [];
    for (s = 0; s < nSites; s++) {
      if (!siteShown(s) || siteFlagged[s] <= 0) { continue; }
      var px = siteMx[s] * scale - ox, py = siteMy[s] * scale - oy;
      if (px < -20 || px > W + 20 || py < -20 || py > H + 20) { continue; }
      visible.push(s);
      if (siteFlagged[s] > maxSite) { maxSite = siteFlagged[s]; }
    }
    gridState.circles = visible.length <= MAX_CIRCLES;
    if (gridState.circles) {
      ctx.beginPath();
      visible.forEach(function (q) {
        var rr = 3 + 15 * Math.sqrt(siteFlagged[q] / Math.max(maxSite, 1)), qx = siteMx[q] * scale - ox, qy = siteMy[q] * scale - oy;
        ctx.moveTo(qx + rr, qy); ctx.arc(qx, qy, rr, 0, 2 * Math.PI);
      });
      ctx.lineWidth = 1.5; ctx.strokeStyle = '#000000'; ctx.stroke();
    }
    mapEl.setAttribute('data-site-circles', String(gridState.circles ? visible.length : 0));
    mapEl.setAttribute('data-grid-level', String(g));
    mapEl.setAttribute('data-grid-cells', String(n));
    mapEl.setAttribute('data-grid-total', String(total));
  }
  function siteShown(s) { return (F.cat < 0 || siteCat[s] === F.cat) && (F.site < 0 || s === F.site); }

  function drawContext(ctx, scale, ox, oy) {
    var C = DATA.context;
    if (!C || !C.n) { return; }
    if (!C._mx) {
      var lc = typed(C.lc), xy = typed(C.xy, true), nv = xy.length / 2;
      var mx = new Float64Array(nv), my = new Float64Array(nv), x = C.x0, y = C.y0;
      for (var k = 0; k < nv; k++) { x += xy[2 * k]; y += xy[2 * k + 1]; mx[k] = mercX(x / 1e6); my[k] = mercY(y / 1e6); }
      C._mx = mx; C._my = my; C._lc = lc;
    }
    ctx.beginPath();
    var p = 0;
    for (var l = 0; l < C._lc.length; l++) {
      var n = C._lc[l];
      if (n > 0) {
        ctx.moveTo(C._mx[p] * scale - ox, C._my[p] * scale - oy);
        for (var q = p + 1; q < p + n; q++) { ctx.lineTo(C._mx[q] * scale - ox, C._my[q] * scale - oy); }
      }
      p += n;
    }
    ctx.lineWidth = 1; ctx.strokeStyle = '#9a9a9a'; ctx.stroke();
  }

  var contextLayer = new CanvasLayer(drawContext, 'gfContext');
  var siteLayer = new CanvasLayer(drawSites, 'gfSites');
  var dataLayer = new CanvasLayer(POINTS ? drawDots : drawGrid, 'gfData');
  var bounds = DATA.bbox ? L.latLngBounds([DATA.bbox[1], DATA.bbox[0]], [DATA.bbox[3], DATA.bbox[2]]) : null;
  function fit() {
    if (bounds) { map.fitBounds(bounds.pad(0.05), { animate: false }); } else { map.setView([20, 0], 2, { animate: false }); }
  }
  fit();
  contextLayer.addTo(map); siteLayer.addTo(map); dataLayer.addTo(map);
  contextLayer.redraw();
  var focusRing = null;
  function redrawMap() { siteLayer.redraw(); dataLayer.redraw(); }
  function zoomToSite(s) {
    var ll = L.latLng(siteLat[s], siteAx[s] / 1e6);
    var r = fenceRadius(s) + 100, dLat = r / 111000, dLon = r / (111000 * Math.cos(siteLat[s] * Math.PI / 180));
    map.fitBounds(L.latLngBounds([ll.lat - dLat, ll.lng - dLon], [ll.lat + dLat, ll.lng + dLon]), { animate: false, maxZoom: 18 });
  }

  /* clicking (or Enter on the focused map): the nearest read, else the grid cell, else the site */
  function nearestRead(px, py, radius) {
    var best = -1, bd = radius * radius;
    for (var j = 0; j < drawn.n; j++) {
      var dx = drawn.x[j] - px, dy = drawn.y[j] - py, d = dx * dx + dy * dy;
      if (d <= bd) { bd = d; best = drawn.idx[j]; }
    }
    return best;
  }
  function pointInRings(R2, s, px, py, scale, ox, oy) {
    var inside = false;
    for (var r = R2.siteStart[s]; r < R2.siteStart[s + 1]; r++) {
      var k0 = R2.ringStart[r], k1 = R2.ringStart[r + 1];
      for (var k = k0, j = k1 - 1; k < k1; j = k++) {
        var xi = R2.mx[k] * scale - ox, yi = R2.my[k] * scale - oy, xj = R2.mx[j] * scale - ox, yj = R2.my[j] * scale - oy;
        if ((yi > py) !== (yj > py) && px < (xj - xi) * (py - yi) / (yj - yi) + xi) { inside = !inside; }
      }
    }
    return inside;
  }
  function distToRings(s, px, py, scale, ox, oy) {
    /* pixels from (px, py) to the nearest edge of a site's rings */
    var best = Infinity;
    for (var r = SR.siteStart[s]; r < SR.siteStart[s + 1]; r++) {
      var k0 = SR.ringStart[r], k1 = SR.ringStart[r + 1], closed = siteKind[s] === 1;
      for (var k = k0; k < k1; k++) {
        var k2 = k + 1 < k1 ? k + 1 : (closed ? k0 : -1);
        if (k2 < 0) { break; }
        var ax = SR.mx[k] * scale - ox, ay = SR.my[k] * scale - oy, bx = SR.mx[k2] * scale - ox, by = SR.my[k2] * scale - oy;
        var dx = bx - ax, dy = by - ay, len = dx * dx + dy * dy, t = len ? ((px - ax) * dx + (py - ay) * dy) / len : 0;
        t = Math.max(0, Math.min(1, t));
        var ex = ax + t * dx - px, ey = ay + t * dy - py, dd = Math.sqrt(ex * ex + ey * ey);
        if (dd < best) { best = dd; }
      }
    }
    return best;
  }
  function siteAt(px, py) {
    var scale = map.options.crs.scale(map.getZoom()), o = map.getPixelBounds().min, ox = o.x, oy = o.y;
    var fenceHit = -1;
    for (var s = 0; s < nSites; s++) {
      var reach = siteReachPx(s, scale);
      if (siteKind[s] === 0) {
        var mpp = metresPerPixel(siteLat[s], scale), x = siteMx[s] * scale - ox, y = siteMy[s] * scale - oy;
        var d = Math.sqrt((x - px) * (x - px) + (y - py) * (y - py));
        if (d <= Math.max(siteR[s] / mpp, 2.5) + 3) { return { s: s, fence: false }; }
        if (fenceHit < 0 && d <= reach) { fenceHit = s; }
      } else if (inView(SR, s, scale, ox - px, oy - py, 1, 1, reach + 3)) {
        if (siteKind[s] === 1 && pointInRings(SR, s, px, py, scale, ox, oy)) { return { s: s, fence: false }; }
        var de = distToRings(s, px, py, scale, ox, oy);
        if (siteKind[s] === 2 && de <= 4) { return { s: s, fence: false }; }
        if (fenceHit < 0 && de <= reach) { fenceHit = s; }
      }
    }
    return fenceHit >= 0 ? { s: fenceHit, fence: true } : null;
  }
  function popupBody(title, rows) {
    var box = el('div', { 'class': 'gf-popup' });
    box.appendChild(el('p', null)).appendChild(el('strong', null, title));
    var dl = el('dl');
    rows.forEach(function (r) { dl.appendChild(el('dt', null, r[0])); dl.appendChild(el('dd', null, r[1] === '' ? '—' : r[1])); });
    box.appendChild(dl);
    return box;
  }
  function readPopup(i) {
    return popupBody('Flagged read', columns.map(function (c) { return [c.label, c.text(i)]; }));
  }
  function sitePopup(s, fence) {
    var c = CATS[siteCat[s]];
    var rows = [
      ['site_id', siteId[s]], ['name', siteName[s] || ''], ['category', c.label + ' (' + c.id + ')'],
      ['geometry', ['point, grown by ' + siteR[s] + ' m', 'area', 'line'][siteKind[s]]],
      ['fence', c.buffer_m + ' m from the site (drawn approximately)']
    ];
    if (POINTS) {
      var n = 0;
      for (var j = 0; j < sel.length; j++) { if (readSite[sel[j]] === s) { n++; } }
      rows.push(['flagged reads (filtered)', fmt(n)]);
    } else {
      rows.push(['flagged reads', fmt(siteFlagged[s])]);
      if (siteFlagged[s] > 0) { rows.push(['nearest read', textOfNumber(siteMinD[s]) + ' m']); }
    }
    return popupBody(fence ? 'Inside the fence of a site' : 'Sensitive site', rows);
  }
  function describeAt(px, py, radius) {
    var ll = map.containerPointToLatLng([px, py]);
    if (POINTS) {
      var i = nearestRead(px, py, radius);
      if (i >= 0) { openRead(i, false); return; }
    } else if (gridState.cells) {
      var scale = map.options.crs.scale(map.getZoom()), o = map.getPixelBounds().min;
      var g = gridLevels[gridState.level].g, size = scale / Math.pow(2, g);
      var cx = Math.floor((px + o.x) / size), cy = Math.floor((py + o.y) / size), C = gridState.cells;
      for (var j = 0; j < C.x.length; j++) {
        if (C.x[j] === cx && C.y[j] === cy) {
          var metres = Math.round(size * metresPerPixel(ll.lat, scale));
          L.popup().setLatLng(ll).setContent(popupBody('Grid cell', [['flagged reads', fmt(C.n[j])], ['cell size', 'about ' + fmt(metres) + ' m'], ['filter', filterText().slice(2, -1)]])).openOn(map);
          return;
        }
      }
    }
    var hit = siteAt(px, py);
    if (hit) { L.popup().setLatLng(ll).setContent(sitePopup(hit.s, hit.fence)).openOn(map); }
  }
  function openRead(i, pan) {
    var ll = L.latLng(rLat[i], rLon[i]);
    if (pan) { map.setView(ll, Math.max(map.getZoom(), 17), { animate: false }); }
    if (focusRing) { map.removeLayer(focusRing); }
    focusRing = L.circleMarker(ll, { radius: 9, color: '#000000', weight: 3, fill: false, interactive: false }).addTo(map);
    L.popup({ maxWidth: 460, minWidth: 320 }).setLatLng(ll).setContent(readPopup(i)).openOn(map);
  }
  map.on('click', function (e) { describeAt(e.containerPoint.x, e.containerPoint.y, 8); });
  mapEl.addEventListener('keydown', function (e) {
    if (e.target !== mapEl || (e.key !== 'Enter' && e.key !== ' ')) { return; }
    e.preventDefault();
    var size = map.getSize();
    describeAt(size.x / 2, size.y / 2, 40);
  });

  function updateLegend() {
    var box = $('legend');
    clear(box);
    var present = new Uint8Array(nCat);
    for (var s = 0; s < nSites; s++) { present[siteCat[s]] = 1; }
    CATS.forEach(function (c, k) {
      if (!present[k]) { return; }
      var item = el('div', { 'class': 'item' });
      item.appendChild(shapeSvg(c.shape, c.colour, 5));
      item.appendChild(el('span', null, c.label + ': site (filled) and ' + (POINTS ? 'reads (this shape)' : 'its reads') + '; fence ' + c.buffer_m + ' m'));
      box.appendChild(item);
    });
    var fence = el('div', { 'class': 'item' });
    var fs = svg('svg', { width: '28', height: '10', viewBox: '0 0 28 10', 'aria-hidden': 'true', focusable: 'false' });
    fs.appendChild(svg('rect', { x: '1', y: '1', width: '26', height: '8', fill: '#e2e2e0', stroke: '#333333', 'stroke-width': '1.5' }));
    fence.appendChild(fs); fence.appendChild(el('span', null, 'Grey area with a dark edge: within a fence (drawn approximately)'));
    box.appendChild(fence);
    if (!POINTS && gridState.cells) {
      var b = gridState.cells.breaks, lo = 1;
      b.forEach(function (hi, k) {
        if (k > 0 && hi === b[k - 1]) { return; }
        var it = el('div', { 'class': 'item' });
        var sw = svg('svg', { width: '16', height: '16', viewBox: '0 0 16 16', 'aria-hidden': 'true', focusable: 'false' });
        sw.appendChild(svg('rect', { x: '1', y: '1', width: '14', height: '14', fill: GRID[k], stroke: '#1a1a1a' }));
        it.appendChild(sw); it.appendChild(el('span', null, 'Cell with ' + (lo === hi ? fmt(hi) : fmt(lo) + '–' + fmt(hi)) + ' reads'));
        box.appendChild(it); lo = hi + 1;
      });
      var circ = el('div', { 'class': 'item' });
      circ.appendChild(shapeSvg('circle', 'none', 6));
      circ.appendChild(el('span', null, 'Open circle: a site\u2019s total, area proportional to its reads (drawn when at most ' + MAX_CIRCLES + ' are in view)'));
      box.appendChild(circ);
    }
  }

  /* ------------------------------------------------------------ charts (SVG + data tables) */
  var charts = {};
  function chartFigure(id, title) {
    var fig = el('figure', { 'class': 'chart', id: 'chart-' + id });
    var cap = el('figcaption');
    cap.appendChild(el('h3', { id: 'chart-' + id + '-h' }, title));
    fig.appendChild(cap);
    var holder = el('div', { 'class': 'plot' });
    fig.appendChild(holder);
    var det = el('details');
    det.appendChild(el('summary', null, 'Data table: ' + title));
    var wrap = el('div', { 'class': 'table-wrap' });
    var tbl = el('table');
    tbl.appendChild(el('caption', null, title));
    tbl.appendChild(el('thead')); tbl.appendChild(el('tbody'));
    wrap.appendChild(tbl); det.appendChild(wrap); fig.appendChild(det);
    $('chart-list').appendChild(fig);
    charts[id] = { fig: fig, holder: holder, table: tbl, title: title };
    return charts[id];
  }
  function tableHead(tbl, names) {
    var thead = tbl.tHead; clear(thead);
    var tr = el('tr');
    names.forEach(function (n, k) { tr.appendChild(el('th', { scope: 'col', 'class': k ? 'num' : '' }, n)); });
    thead.appendChild(tr);
  }
  function barChart(ch, items, header) {
    /* horizontal bars: label, bar, value; colour + shape when the item is a category */
    clear(ch.holder);
    var total = items.reduce(function (a, b) { return a + b.value; }, 0);
    ch.fig.setAttribute('data-total', String(total));
    if (!items.length) { ch.holder.appendChild(el('p', { 'class': 'empty' }, 'No flagged reads under the current filters.')); }
    else {
      var rowH = 20, W = 640, left = 230, barW = 330, H = items.length * rowH + 8;
      var max = Math.max.apply(null, items.map(function (d) { return d.value; }));
      var s = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-labelledby': ch.fig.id + '-h' });
      items.forEach(function (d, k) {
        var y = 4 + k * rowH, label = d.label.length > 30 ? d.label.slice(0, 29) + '\u2026' : d.label;
        var t = s.appendChild(svg('text', { x: String(left - 8), y: String(y + 14), 'text-anchor': 'end' }, label));
        if (label !== d.label) { t.appendChild(svg('title', null, d.label)); }
        var w = Math.max(1, barW * d.value / max);
        s.appendChild(svg('rect', { x: String(left), y: String(y + 3), width: w.toFixed(1), height: '13', fill: d.colour || '#0b5394', stroke: '#1a1a1a', 'stroke-width': '0.5' }));
        s.appendChild(svg('text', { x: (left + w + 6).toFixed(1), y: String(y + 14) }, fmt(d.value)));
      });
      ch.holder.appendChild(s);
    }
    tableHead(ch.table, header);
    var tb = ch.table.tBodies[0]; clear(tb);
    items.forEach(function (d) { var tr = el('tr'); cell(tr, d.label, null, true); cell(tr, fmt(d.value), 'num'); tb.appendChild(tr); });
  }
  function heatChart(ch, wh, untimed) {
    clear(ch.holder);
    var total = 0, max = 0, k;
    for (k = 0; k < 168; k++) { total += wh[k]; if (wh[k] > max) { max = wh[k]; } }
    ch.fig.setAttribute('data-total', String(total + untimed));
    var W = 640, left = 80, top = 18, cw = 22, chh = 20;
    var s = svg('svg', { viewBox: '0 0 ' + W + ' ' + (top + 7 * chh + 8), role: 'img', 'aria-labelledby': ch.fig.id + '-h' });
    for (var hh = 0; hh < 24; hh += 3) { s.appendChild(svg('text', { x: String(left + hh * cw + cw / 2), y: '12', 'text-anchor': 'middle' }, String(hh).padStart(2, '0'))); }
    for (var d = 0; d < 7; d++) {
      s.appendChild(svg('text', { x: String(left - 6), y: String(top + d * chh + 14), 'text-anchor': 'end' }, WEEKDAYS[d].slice(0, 3)));
      for (var h2 = 0; h2 < 24; h2++) {
        var v = wh[d * 24 + h2], cls = v === 0 ? 0 : 1 + Math.min(4, Math.floor(5 * v / (max + 1)));
        var r = s.appendChild(svg('rect', { x: String(left + h2 * cw), y: String(top + d * chh), width: String(cw - 1), height: String(chh - 1), fill: HEAT[cls], stroke: '#8c8c8c', 'stroke-width': '0.5' }));
        r.appendChild(svg('title', null, WEEKDAYS[d] + ' ' + String(h2).padStart(2, '0') + ':00: ' + fmt(v)));
      }
    }
    ch.holder.appendChild(s);
    if (untimed) { ch.holder.appendChild(el('p', null, fmt(untimed) + ' flagged reads have no time and are not in this chart.')); }
    var names = ['Weekday'];
    for (k = 0; k < 24; k++) { names.push(String(k).padStart(2, '0')); }
    names.push('Total');
    tableHead(ch.table, names);
    var tb = ch.table.tBodies[0]; clear(tb);
    for (d = 0; d < 7; d++) {
      var tr = el('tr'), sum = 0;
      cell(tr, WEEKDAYS[d], null, true);
      for (k = 0; k < 24; k++) { cell(tr, fmt(wh[d * 24 + k]), 'num'); sum += wh[d * 24 + k]; }
      cell(tr, fmt(sum), 'num');
      tb.appendChild(tr);
    }
  }
  function dayChart(ch, days, counts) {
    clear(ch.holder);
    var total = counts.reduce(function (a, b) { return a + b; }, 0);
    ch.fig.setAttribute('data-total', String(total));
    if (!days.length) { ch.holder.appendChild(el('p', { 'class': 'empty' }, 'No timed flagged reads under the current filters.')); }
    else {
      var d0 = days[0], d1 = days[days.length - 1], nd = d1 - d0 + 1, W = 640, H = 180, left = 50, bottom = 24, top = 8;
      var bw = (W - left - 10) / nd, max = Math.max.apply(null, counts);
      var s = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-labelledby': ch.fig.id + '-h' });
      s.appendChild(svg('line', { x1: String(left), y1: String(H - bottom), x2: String(W - 10), y2: String(H - bottom), stroke: '#1a1a1a' }));
      s.appendChild(svg('text', { x: String(left - 4), y: String(top + 10), 'text-anchor': 'end' }, fmt(max)));
      s.appendChild(svg('text', { x: String(left - 4), y: String(H - bottom), 'text-anchor': 'end' }, '0'));
      days.forEach(function (d, k) {
        var hgt = (H - bottom - top) * counts[k] / max, x = left + (d - d0) * bw;
        var r = s.appendChild(svg('rect', { x: x.toFixed(2), y: (H - bottom - hgt).toFixed(2), width: Math.max(bw - 0.5, 0.5).toFixed(2), height: hgt.toFixed(2), fill: '#0b5394' }));
        r.appendChild(svg('title', null, dayText(d) + ': ' + fmt(counts[k])));
      });
      var ticks = Math.min(6, nd);
      for (var t = 0; t < ticks; t++) {
        var dd = d0 + Math.round(t * (nd - 1) / Math.max(ticks - 1, 1));
        s.appendChild(svg('text', { x: (left + (dd - d0 + 0.5) * bw).toFixed(1), y: String(H - 6), 'text-anchor': 'middle' }, dayText(dd)));
      }
      ch.holder.appendChild(s);
    }
    tableHead(ch.table, ['Date', 'Flagged reads']);
    var tb = ch.table.tBodies[0]; clear(tb);
    days.forEach(function (d, k) { var tr = el('tr'); cell(tr, dayText(d), null, true); cell(tr, fmt(counts[k]), 'num'); tb.appendChild(tr); });
  }
  function topItems(counts, label, colour) {
    var idx = [];
    for (var k = 0; k < counts.length; k++) { if (counts[k] > 0) { idx.push(k); } }
    idx.sort(function (a, b) { return counts[b] - counts[a] || (label(a) < label(b) ? -1 : label(a) > label(b) ? 1 : 0); });
    var items = idx.slice(0, TOP).map(function (k) { return { label: label(k), value: counts[k], colour: colour ? colour(k) : null }; });
    var rest = idx.slice(TOP).reduce(function (a, k) { return a + counts[k]; }, 0);
    if (rest > 0) { items.push({ label: 'Others (' + fmt(idx.length - TOP) + ')', value: rest, colour: '#8c8c8c' }); }
    return items;
  }
  function setupCharts() {
    var tz = META.timezone;
    chartFigure('weekhour', 'Flagged reads by weekday and hour (' + tz + ')');
    chartFigure('days', 'Flagged reads per day (' + tz + ')');
    chartFigure('category', 'Flagged reads by category');
    chartFigure('agency', 'Top agencies');
    chartFigure('camera', 'Top cameras');
    chartFigure('site', 'Top sites');
  }
  var aggCharts = null;
  function updateCharts() {
    var wh = new Float64Array(168), untimed = 0, catC = new Float64Array(nCat), siteC = new Float64Array(nSites);
    var dayMap = new Map(), agC, camC, k, j;
    if (POINTS) {
      agC = new Float64Array(AG ? AG.labels.length : 0); camC = new Float64Array(CAM ? CAM.labels.length : 0);
      for (j = 0; j < sel.length; j++) {
        var i = sel[j];
        catC[readCat[i]]++; siteC[readSite[i]]++;
        if (AG) { agC[AG.codes[i]]++; }
        if (CAM) { camC[CAM.codes[i]]++; }
        var t = readLocal[i];
        if (isNaN(t)) { untimed++; continue; }
        var day = readDay[i], wd = ((day + 3) % 7 + 7) % 7, hr = Math.floor((t - day * 86400) / 3600);
        wh[wd * 24 + hr]++;
        dayMap.set(day, (dayMap.get(day) || 0) + 1);
      }
      var agL = AG ? AG.labels : [], camL = CAM ? CAM.labels : [];
      barChart(charts.agency, topItems(agC, function (q) { return agL[q]; }), ['Agency', 'Flagged reads']);
      barChart(charts.camera, topItems(camC, function (q) { return camL[q]; }), ['Camera', 'Flagged reads']);
    } else {
      if (!aggCharts) {
        var A = AGG.charts;
        aggCharts = {
          wh: A.weekhour.map(function (e) { return numbers(e, 168); }), untimed: A.untimed, days: A.days,
          dc: A.day_counts.map(function (e) { return numbers(e, A.days.length); }),
          ag: { labels: A.agency.labels, m: A.agency.counts.map(function (e) { return numbers(e, 0); }) },
          cam: { labels: A.camera.labels, m: A.camera.counts.map(function (e) { return numbers(e, 0); }) }
        };
      }
      var X = aggCharts;
      for (var c = 0; c < nCat; c++) {
        if (F.cat >= 0 && c !== F.cat) { continue; }
        for (k = 0; k < 168; k++) { wh[k] += X.wh[c][k]; }
        untimed += X.untimed[c];
        for (k = 0; k < X.days.length; k++) { if (X.dc[c][k]) { dayMap.set(X.days[k], (dayMap.get(X.days[k]) || 0) + X.dc[c][k]); } }
      }
      for (var s = 0; s < nSites; s++) { if (siteShown(s)) { siteC[s] = siteFlagged[s]; catC[siteCat[s]] += siteFlagged[s]; } }
      var sum = function (M) {
        var out = new Float64Array(M.labels.length);
        for (var c2 = 0; c2 < nCat; c2++) { if (F.cat < 0 || c2 === F.cat) { for (var q = 0; q < out.length; q++) { out[q] += M.m[c2][q]; } } }
        return out;
      };
      barChart(charts.agency, topItems(sum(X.ag), function (q) { return X.ag.labels[q]; }), ['Agency', 'Flagged reads']);
      barChart(charts.camera, topItems(sum(X.cam), function (q) { return X.cam.labels[q]; }), ['Camera', 'Flagged reads']);
    }
    heatChart(charts.weekhour, wh, untimed);
    var days = Array.from(dayMap.keys()).sort(function (a, b) { return a - b; });
    dayChart(charts.days, days, days.map(function (d) { return dayMap.get(d); }));
    barChart(charts.category, topItems(catC, function (q) { return CATS[q].label; }, function (q) { return CATS[q].colour; }), ['Category', 'Flagged reads']);
    barChart(charts.site, topItems(siteC, siteLabel), ['Site', 'Flagged reads']);
  }

  /* ------------------------------------------------------------ table */
  var table = (function () {
    var tbl = $('read-table'), page = 0, sortCol = -1, sortDir = 1, order = null;
    var cols = POINTS ? columns : siteColumns();
    function siteColumns() {
      var t = function (f) { return { text: f, key: f }; };
      var c = [
        Object.assign(t(function (s) { return siteId[s]; }), { label: 'site_id' }),
        Object.assign(t(function (s) { return siteName[s] || ''; }), { label: 'site_name' }),
        Object.assign(t(function (s) { return CATS[siteCat[s]].id; }), { label: 'category' }),
        { label: 'flagged reads', numeric: true, align: 'num', text: function (s) { return fmt(siteFlagged[s]); }, key: function (s) { return siteFlagged[s]; } },
        { label: 'nearest distance_m', numeric: true, align: 'num', text: function (s) { return textOfNumber(siteMinD[s]); }, key: function (s) { return siteMinD[s]; } },
        { label: 'buffer_m', numeric: true, align: 'num', text: function (s) { return String(CATS[siteCat[s]].buffer_m); }, key: function (s) { return CATS[siteCat[s]].buffer_m; } }
      ];
      return c;
    }
    function rows() {
      if (POINTS) { return sel; }
      var out = [];
      for (var s = 0; s < nSites; s++) { if (siteFlagged[s] > 0 && siteShown(s)) { out.push(s); } }
      out.sort(function (a, b) { return siteFlagged[b] - siteFlagged[a] || a - b; });
      return out;
    }
    function header() {
      var tr = el('tr');
      if (POINTS) { tr.appendChild(el('th', { scope: 'col', 'class': 'map-col' }, 'Map')); }
      cols.forEach(function (c, k) {
        var th = el('th', { scope: 'col', 'aria-sort': k === sortCol ? (sortDir > 0 ? 'ascending' : 'descending') : 'none' });
        var b = el('button', { type: 'button' }, c.label);
        b.addEventListener('click', function () { if (sortCol === k) { sortDir = -sortDir; } else { sortCol = k; sortDir = 1; } sort(); render(); });
        th.appendChild(b); tr.appendChild(th);
      });
      clear(tbl.tHead); tbl.tHead.appendChild(tr);
    }
    function sort() {
      var base = rows();
      if (sortCol < 0) { order = base; return; }
      var c = cols[sortCol], n = base.length, keys = new Array(n), idx = new Array(n);
      for (var j = 0; j < n; j++) { keys[j] = c.key(base[j]); idx[j] = j; }
      idx.sort(function (a, b) {
        var x = keys[a], y = keys[b];
        var xn = x === '' || x === null || (typeof x === 'number' && isNaN(x)), yn = y === '' || y === null || (typeof y === 'number' && isNaN(y));
        if (xn || yn) { return xn === yn ? a - b : (xn ? 1 : -1); }
        return (x < y ? -1 : x > y ? 1 : 0) * sortDir || a - b;
      });
      order = idx.map(function (j2) { return base[j2]; });
    }
    function render() {
      header();
      var n = order.length, pages = Math.max(1, Math.ceil(n / PAGE_SIZE));
      if (page >= pages) { page = pages - 1; }
      var a = page * PAGE_SIZE, b = Math.min(n, a + PAGE_SIZE), tb = tbl.tBodies[0];
      clear(tb);
      for (var j = a; j < b; j++) {
        var r = order[j], tr = el('tr');
        if (POINTS) {
          var td = el('td', { 'class': 'map-col' }), btn = el('button', { type: 'button', 'class': 'show', 'aria-label': 'Show read ' + (j + 1) + ' on the map' }, 'Show');
          btn.addEventListener('click', (function (i) { return function () { openRead(i, true); mapEl.focus(); }; })(r));
          td.appendChild(btn); tr.appendChild(td);
        }
        cols.forEach(function (c) { cell(tr, c.text(r), c.align); });
        tb.appendChild(tr);
      }
      tbl.setAttribute('data-rows', String(n));
      var range = n ? fmt(a + 1) + '–' + fmt(b) : '0';
      $('page-status').textContent = 'Page ' + fmt(page + 1) + ' of ' + fmt(pages) + ' (rows ' + range + ' of ' + fmt(n) + ')';
      $('print-page-note').textContent = 'Printed: page ' + fmt(page + 1) + ' of ' + fmt(pages) + ' of the table (rows ' + range + ' of ' + fmt(n) + ', as sorted and filtered on screen). Open the HTML file to see every row.';
      $('page-first').disabled = $('page-prev').disabled = page === 0;
      $('page-next').disabled = $('page-last').disabled = page >= pages - 1;
    }
    function go(p) { page = p; render(); }
    $('page-first').addEventListener('click', function () { go(0); });
    $('page-prev').addEventListener('click', function () { go(Math.max(0, page - 1)); });
    $('page-next').addEventListener('click', function () { go(page + 1); });
    $('page-last').addEventListener('click', function () { go(Math.ceil(order.length / PAGE_SIZE) - 1); });
    return { reset: function () { page = 0; sort(); render(); } };
  })();

  /* ------------------------------------------------------------ static sections */
  function renderHeader() {
    doc.title = DATA.title;
    $('title').textContent = DATA.title;
    var r = META.report;
    $('subtitle').textContent = 'From report ' + r.file + ' (' + r.format + ') and summary ' + META.summary.file + '; scanned by ' +
      META.tool.name + ' ' + META.tool.version + ' at ' + META.generated_at + '; page built by ' + META.page_tool + '.';
    $('js-warning').classList.add('hidden');
  }
  function renderCounts() {
    var C = META.counts, dl = $('count-list');
    [['Reads in', 'reads_in', 'count-in'], ['Clean', 'reads_clean', 'count-clean'], ['Flagged', 'reads_flagged', 'count-flagged'], ['Rejected', 'reads_rejected', 'count-rejected']].forEach(function (x) {
      var d = el('div');
      d.appendChild(el('dt', null, x[0]));
      d.appendChild(el('dd', { id: x[2], 'data-value': String(C[x[1]]) }, fmt(C[x[1]])));
      dl.appendChild(d);
    });
    var sum = C.reads_clean + C.reads_flagged + C.reads_rejected;
    $('count-check').textContent = sum === C.reads_in
      ? 'Every read is counted once: ' + fmt(C.reads_in) + ' = ' + fmt(C.reads_clean) + ' clean + ' + fmt(C.reads_flagged) + ' flagged + ' + fmt(C.reads_rejected) + ' rejected. ' + fmt(META.sites_fenced) + ' sites fenced.'
      : 'The counts do not add up (' + fmt(sum) + ' \u2260 ' + fmt(C.reads_in) + '): the summary is damaged.';
    var tb = $('by-category').tBodies[0];
    var byCat = META.flagged_by_category;
    CATS.forEach(function (c) {
      var tr = el('tr');
      cell(tr, c.label + ' (' + c.id + ')', null, true);
      cell(tr, fmt(byCat[c.id] || 0), 'num');
      cell(tr, c.buffer_m + ' m', 'num');
      tb.appendChild(tr);
    });
    var rb = $('rejections').tBodies[0], rej = META.rejected_by_reason, keys = Object.keys(rej);
    if (!keys.length) { var tr0 = el('tr'); cell(tr0, 'none', null, true); cell(tr0, 'No read was rejected.'); cell(tr0, '0', 'num'); rb.appendChild(tr0); }
    keys.forEach(function (k) {
      var tr = el('tr');
      cell(tr, k, null, true); cell(tr, META.reason_text[k] || ''); cell(tr, fmt(rej[k]), 'num');
      rb.appendChild(tr);
    });
  }
  function kvTable(parent, caption, rows, hashCols) {
    var wrap = el('div', { 'class': 'table-wrap' }), t = el('table', { 'class': 'provenance-table' });
    t.appendChild(el('caption', null, caption));
    var head = el('thead'), tr = el('tr');
    rows[0].forEach(function (h) { tr.appendChild(el('th', { scope: 'col' }, h)); });
    head.appendChild(tr); t.appendChild(head);
    var tb = el('tbody');
    rows.slice(1).forEach(function (r) {
      var row = el('tr');
      r.forEach(function (v, k) { cell(row, v === null || v === undefined ? '' : String(v), hashCols && hashCols.indexOf(k) >= 0 ? 'hash' : null, k === 0); });
      tb.appendChild(row);
    });
    t.appendChild(tb); wrap.appendChild(t); parent.appendChild(wrap);
  }
  function renderProvenance() {
    var p = $('provenance-body');
    kvTable(p, 'Files of this report', [['Role', 'File', 'SHA-256', 'Detail']].concat(
      [['report', META.report.file, META.report.sha256, META.report.format + ', ' + fmt(META.report.bytes) + ' bytes']],
      [['summary', META.summary.file, META.summary.sha256, '']],
      DATA.context ? [['street context', DATA.context.file, DATA.context.sha256 || '', DATA.context.attribution]] : []), [2]);
    kvTable(p, 'Read logs scanned', [['File', 'Rows', 'SHA-256', 'Delimiter', 'Time zone', 'Time format']].concat(
      META.inputs.map(function (x) { return [x.file, x.rows === undefined ? '' : fmt(x.rows), x.sha256 || '', x.delimiter || '', x.timezone || '', x.time_format || '']; })), [2]);
    // Licence and attribution travel with each layer: ODbL 4.3 asks for
    // "© OpenStreetMap contributors" on every work made from OSM sites (issue #8).
    kvTable(p, 'Site layers (SHA-256 checked against the summary)', [['File', 'Sites', 'Rejected', 'Repaired', 'Licence and attribution', 'SHA-256']].concat(
      META.layers.map(function (x) { return [x.file, fmt(x.sites), fmt(x.rejected), fmt(x.repaired), [x.license, x.attribution].filter(Boolean).join('; '), x.sha256]; })), [5]);
    var pol = META.policy;
    kvTable(p, 'Policy packs (tier ' + pol.tier + ')', [['Pack', 'File', 'Status', 'SHA-256']].concat(
      pol.packs.map(function (x) { return [x.name, x.file, x.status, x.sha256]; })), [3]);
    kvTable(p, 'Distances by category', [['Category', 'buffer_m', 'footprint_m', 'Temporal', 'Packs']].concat(
      CATS.map(function (c) { return [c.label + ' (' + c.id + ')', c.buffer_m, c.footprint_m, c.temporal, (pol.categories[c.id].packs || []).join(', ')]; })));
    var par = META.parameters, rows = [['Parameter', 'Value']];
    Object.keys(par).forEach(function (k) { rows.push([k, typeof par[k] === 'object' ? JSON.stringify(par[k]) : String(par[k])]); });
    rows.push(['tool', META.tool.name + ' ' + META.tool.version]);
    rows.push(['generated_at', META.generated_at]);
    rows.push(['sites_fenced', fmt(META.sites_fenced)]);
    rows.push(['sites drawn on the map', fmt(nSites) + (META.sites_left_out ? ' (' + fmt(META.sites_left_out) + ' more fenced sites in the area are not drawn)' : '')]);
    kvTable(p, 'Parameters', rows);
  }
  function renderNotes() {
    var C = META.counts;
    $('map-note').textContent = (POINTS
      ? 'Every flagged read is drawn as a dot whose shape and colour give its category; click a dot (or press Enter on the map) to see its properties.'
      : 'This report has ' + fmt(C.reads_flagged) + ' flagged reads, more than the ' + fmt(META.max_points) + ' drawn one by one (--max-points): the map shows a density grid (cells about ' + META.grid_cell_m + ' m across when zoomed in, 4 and 16 times wider when zoomed out) and each site\u2019s total as an open circle.') +
      ' Sites are coloured by category; the grey areas with a dark edge are their fences (buffer_m), drawn approximately: the distances in the table are exact (geodesic, WGS84). No basemap is loaded' + (DATA.context ? '; streets come from ' + DATA.context.file + '.' : '.') +
      (META.plates_pseudonymised ? ' Plates are pseudonymised (HMAC-SHA256).' : '');
    $('filter-note').textContent = POINTS
      ? 'Filters apply to the map, the charts and the table together. Dates are local dates in ' + META.timezone + '.'
      : 'Above --max-points the page holds totals, not reads: the category filter applies to the grid, the charts and the table; the site filter zooms to the site and limits the table, the category chart and the site chart; agency, camera and date filters need the reads and are off (see the report file).';
    $('charts-note').textContent = 'Each chart has its data as a table below it. Times are local times in ' + META.timezone + '.';
    $('table-note').textContent = POINTS
      ? 'Every property of the report, one row per flagged read, ' + PAGE_SIZE + ' rows per page; click a column heading to sort.'
      : 'Per-site totals (' + PAGE_SIZE + ' rows per page): the reads themselves are in the report file.';
    $('read-caption').textContent = POINTS ? 'Flagged reads (filtered)' : 'Flagged reads per site (filtered)';
  }
  function renderNotices() {
    var box = $('notices');
    box.appendChild(el('p', null, 'Made with geofence ' + META.tool.version + ' (GPL-3.0-or-later). Not legal advice: policy packs cite their sources; distances are the project\u2019s choice.'));
    if (DATA.context) { box.appendChild(el('p', null, 'Street context: ' + DATA.context.attribution + '.')); }
    DATA.notices.forEach(function (n) {
      var d = el('details');
      d.appendChild(el('summary', null, n.name + ' ' + n.version + ' (' + n.licence + ')'));
      d.appendChild(el('pre', null, n.text));
      box.appendChild(d);
    });
  }

  /* ------------------------------------------------------------ printing: refit the map to the page */
  function refit() { map.invalidateSize({ pan: false }); fit(); redrawMap(); contextLayer.redraw(); }
  if (window.matchMedia) {
    var mq = window.matchMedia('print');
    if (mq.addEventListener) { mq.addEventListener('change', refit); }
  }
  window.addEventListener('beforeprint', refit);
  window.addEventListener('afterprint', refit);

  renderHeader();
  renderCounts();
  renderProvenance();
  renderNotes();
  renderNotices();
  setupFilters();
  setupCharts();
  updateLegend();
  applyFilters();
  doc.documentElement.setAttribute('data-ready', 'true');
})();
