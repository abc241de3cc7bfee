// The demo report's 3D viewers (impax.report.viewer3d). Rows of <div class="v3d" data-glb=...>
// inside <tr class="v3d-row" data-center data-radius data-az data-el>, in <section id="look3d"
// data-bundle="assets/...">. Everything loads through classic <script src> tags, so it works from
// file:// with no network. API: window.impaxViewers.initAll() -> Promise of per-viewer states.
(function () {
  'use strict';
  const section = document.getElementById('look3d');
  if (!section) return;
  const statusEl = document.getElementById('look3d-status');
  const rows = Array.from(section.querySelectorAll('tr.v3d-row')).map((tr, index) => ({
    index, tr, promise: null, syncing: false,
    center: tr.dataset.center.split(',').map(Number), radius: Number(tr.dataset.radius) || 1,
    az: Number(tr.dataset.az) || 0, el: Number(tr.dataset.el) || 0,
    viewers: Array.from(tr.querySelectorAll('.v3d')).map((div) => ({
      div, canvas: div.querySelector('canvas'), msg: div.querySelector('.v3d-msg'),
      glb: div.dataset.glb, color: div.dataset.color, label: div.dataset.label,
      state: 'idle', error: null, draws: 0,
    })),
  }));

  function say(v, text) {
    v.msg.textContent = text;
    v.msg.style.display = text ? '' : 'none';
  }

  function status(text) {
    if (!statusEl) return;
    statusEl.textContent = text;
    statusEl.hidden = !text;
  }

  const scripts = {};
  function loadScript(src) {
    if (!scripts[src]) {
      scripts[src] = new Promise((resolve, reject) => {
        const s = document.createElement('script');
        s.src = src;
        s.async = true;
        s.onload = () => resolve();
        s.onerror = () => reject(new Error(src + ' could not be loaded'));
        document.head.appendChild(s);
      });
    }
    return scripts[src];
  }

  function webgl2() {
    try {
      const c = document.createElement('canvas');
      return !!(window.WebGL2RenderingContext && c.getContext('webgl2'));
    } catch (e) {
      return false;
    }
  }

  const NO_WEBGL = 'WebGL 2 is not available in this browser, so the 3D viewers are off; the static ' +
    'renders in the Reconstructions table above show the same shapes.';
  let engine = null;
  function getEngine() {
    if (!engine) {
      engine = (async () => {
        if (!webgl2()) throw new Error(NO_WEBGL);
        await loadScript(section.dataset.bundle);
        const T = window.IMPAX_THREE;
        if (!T) throw new Error(section.dataset.bundle + ' did not define IMPAX_THREE');
        let renderer;
        try {
          renderer = new T.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
        } catch (e) {
          throw new Error(NO_WEBGL + ' (' + (e.message || e) + ')');
        }
        renderer.setPixelRatio(1);
        return { T, renderer, loader: new T.GLTFLoader(), size: new T.Vector3() };
      })();
    }
    return engine;
  }

  // Drawing: each viewer renders through the one shared renderer and copies the picture into its
  // own 2D canvas; requests are batched per animation frame.
  let eng = null;
  const dirty = new Set();
  let frame = 0;
  function draw(v) {
    const r = eng.renderer;
    const w = v.canvas.width, h = v.canvas.height;
    const s = r.getSize(eng.size);
    if (s.x !== w || s.y !== h) r.setSize(w, h, false);
    r.render(v.scene, v.camera);
    v.ctx.drawImage(r.domElement, 0, 0);
    v.draws += 1;
  }
  function flush() {
    if (frame) cancelAnimationFrame(frame);
    frame = 0;
    const todo = Array.from(dirty);
    dirty.clear();
    todo.forEach(draw);
  }
  function request(v) {
    dirty.add(v);
    if (!frame) frame = requestAnimationFrame(flush);
  }

  function linked(row, src) {
    if (!row.syncing) {
      row.syncing = true;
      for (const v of row.viewers) {
        if (v === src || !v.camera) continue;
        v.camera.position.copy(src.camera.position);
        v.camera.quaternion.copy(src.camera.quaternion);
        v.camera.zoom = src.camera.zoom;
        v.camera.updateProjectionMatrix();
        v.controls.target.copy(src.controls.target);
        v.controls.update();
      }
      row.syncing = false;
    }
    row.viewers.forEach((v) => v.camera && request(v));
  }

  function setup(row, v) {
    const T = eng.T;
    const px = Math.min(window.devicePixelRatio || 1, 2);
    const css = v.canvas.getBoundingClientRect();
    v.canvas.width = Math.round((css.width || v.canvas.width) * px);
    v.canvas.height = Math.round((css.height || v.canvas.height) * px);
    v.ctx = v.canvas.getContext('2d');
    const scene = new T.Scene();
    scene.background = new T.Color(0xffffff);
    const d = 1.08 * row.radius / Math.sin(T.MathUtils.degToRad(15));
    const camera = new T.PerspectiveCamera(30, v.canvas.width / v.canvas.height, d / 100, d * 20);
    const az = T.MathUtils.degToRad(row.az), el = T.MathUtils.degToRad(row.el);
    const c = new T.Vector3(...row.center);
    camera.position.set(c.x + d * Math.cos(el) * Math.sin(az), c.y + d * Math.sin(el),
      c.z + d * Math.cos(el) * Math.cos(az));
    scene.add(camera);
    scene.add(new T.HemisphereLight(0xffffff, 0x7a7a80, 1.5));
    const key = new T.DirectionalLight(0xffffff, 1.9);
    key.position.set(-0.45, 0.6, 0.65); // upper left, fixed to the camera (as the static renders)
    camera.add(key);
    camera.add(key.target);
    key.target.position.set(0, 0, -1);
    const controls = new T.OrbitControls(camera, v.canvas);
    controls.target.copy(c);
    controls.minDistance = d * 0.05;
    controls.maxDistance = d * 8;
    controls.update();
    controls.addEventListener('change', () => linked(row, v));
    Object.assign(v, { scene, camera, controls });
  }

  function bytes(b64) {
    const s = atob(b64);
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out.buffer;
  }

  async function loadMesh(v) {
    await loadScript(v.glb + '.js');
    const store = window.IMPAX_GLB || {};
    const b64 = store[v.glb];
    if (!b64) throw new Error(v.glb + '.js did not register the mesh');
    delete store[v.glb];
    const gltf = await new Promise((resolve, reject) => eng.loader.parse(bytes(b64), '', resolve, reject));
    const T = eng.T;
    const material = new T.MeshStandardMaterial({
      color: new T.Color(v.color), roughness: 0.7, metalness: 0.0, side: T.DoubleSide,
    });
    gltf.scene.traverse((o) => {
      if (!o.isMesh) return;
      if (!o.geometry.attributes.normal) o.geometry.computeVertexNormals();
      o.material = material;
    });
    v.scene.add(gltf.scene);
  }

  function initRow(row) {
    if (!row.promise) {
      row.promise = (async () => {
        row.viewers.forEach((v) => say(v, 'loading…'));
        try {
          eng = await getEngine();
        } catch (e) {
          const why = e.message || String(e);
          status(why);
          row.viewers.forEach((v) => { v.state = 'error'; v.error = why; say(v, '3D view off: see the note above'); });
          return;
        }
        row.viewers.forEach((v) => setup(row, v));
        await Promise.all(row.viewers.map((v) => loadMesh(v).then(() => {
          v.state = 'ok';
          say(v, '');
        }, (e) => {
          v.state = 'error';
          v.error = 'not available: ' + (e.message || e);
          say(v, v.error);
        })));
        row.viewers.forEach(request);
        flush();
      })();
    }
    return row.promise;
  }

  function report() {
    return rows.flatMap((row) => row.viewers.map((v) => ({
      row: row.index, glb: v.glb, state: v.state, error: v.error, draws: v.draws,
    })));
  }

  function initAll() {
    return Promise.all(rows.map(initRow)).then(report);
  }

  function camera(r, i) {
    const v = rows[r].viewers[i];
    if (!v.camera) return null;
    return { position: v.camera.position.toArray(), target: v.controls.target.toArray(), zoom: v.camera.zoom };
  }

  const button = document.getElementById('look3d-all');
  if (button) button.addEventListener('click', () => initAll());
  if ('IntersectionObserver' in window) {
    const io = new IntersectionObserver((entries) => {
      for (const e of entries) {
        if (!e.isIntersecting) continue;
        io.unobserve(e.target);
        initRow(rows.find((r) => r.tr === e.target));
      }
    }, { rootMargin: '300px 0px' });
    rows.forEach((r) => io.observe(r.tr));
  }
  if (!webgl2()) status(NO_WEBGL);

  window.impaxViewers = { rows, initAll, initRow: (i) => initRow(rows[i]), flush, camera, report };
})();
