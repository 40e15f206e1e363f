// Log viewer of the job page: virtual scrolling over the seq range of one attempt.
//
// Only the lines in view (plus OVERSCAN) exist in the DOM. Lines are fetched
// in CHUNK-line windows from /api/jobs/{id}/logs?after=..&limit=..&html=true
// as the reader scrolls, kept in a bounded cache, and new lines arrive over
// Server-Sent Events. Line HTML is rendered and escaped by the server
// (minijenkin/logs/render.py); everything else is inserted as text.
//
// Seqs of an attempt are dense (1, 2, 3, ...), so line n sits at n * LINE_HEIGHT.
// Above MAX_SPACER pixels (browsers cap element heights), the scrollbar maps
// proportionally onto the line range instead.
"use strict";

(function () {
  const LINE_HEIGHT = 18;
  const CHUNK = 500;
  const OVERSCAN = 40;
  const MAX_SPACER = 8000000;
  const CACHE_CHUNKS_MAX = 200;

  document.addEventListener("DOMContentLoaded", () => {
    const dataElement = document.getElementById("log-data");
    const viewer = document.getElementById("log-viewer");
    if (!dataElement || !viewer) return;
    const data = JSON.parse(dataElement.textContent);
    const spacer = document.getElementById("log-spacer");
    const follow = document.getElementById("log-follow");
    const count = document.getElementById("log-count");
    const findForm = document.getElementById("log-find");
    const findText = document.getElementById("log-find-text");
    const findStatus = document.getElementById("log-find-status");

    const state = {
      jobId: data.job_id,
      attempt: data.attempt,
      lastSeq: data.last_seq,
      finished: data.finished,
      target: null,
      match: null,
      needle: "",
    };
    const chunks = new Map();  // chunk index -> Map(seq -> line), or a pending Promise

    function chunkOf(seq) { return Math.floor((seq - 1) / CHUNK); }

    function store(line) {
      const index = chunkOf(line.seq);
      let chunk = chunks.get(index);
      if (!(chunk instanceof Map)) {
        chunk = new Map();
        chunks.set(index, chunk);
      }
      chunk.set(line.seq, line);
    }

    function trimCache(visibleIndex) {
      if (chunks.size <= CACHE_CHUNKS_MAX) return;
      const far = [...chunks.keys()].sort((a, b) => Math.abs(b - visibleIndex) - Math.abs(a - visibleIndex));
      for (const index of far.slice(0, chunks.size - CACHE_CHUNKS_MAX)) chunks.delete(index);
    }

    function loadChunk(index) {
      if (chunks.has(index) || state.attempt < 1) return;
      const after = index * CHUNK;
      const url = `/api/jobs/${state.jobId}/logs?attempt=${state.attempt}&after=${after}&limit=${CHUNK}&html=true`;
      const pending = fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then((response) => (response.ok ? response.json() : Promise.reject(new Error(`HTTP ${response.status}`))))
        .then((page) => {
          const chunk = new Map();
          chunks.set(index, chunk);
          for (const line of page.lines) {
            if (chunkOf(line.seq) === index) chunk.set(line.seq, line);
            else store(line);
          }
          schedule();
        })
        .catch(() => { chunks.delete(index); });
      chunks.set(index, pending);
    }

    function lineAt(seq) {
      const chunk = chunks.get(chunkOf(seq));
      return chunk instanceof Map ? chunk.get(seq) : undefined;
    }

    // --- geometry -----------------------------------------------------------
    function spacerHeight() { return Math.min(state.lastSeq * LINE_HEIGHT, MAX_SPACER); }
    function scaled() { return state.lastSeq * LINE_HEIGHT > MAX_SPACER; }
    function visibleLines() { return Math.max(1, Math.ceil(viewer.clientHeight / LINE_HEIGHT)); }

    // Index (0-based, fractional) of the line at the top of the view.
    function topLine() {
      if (!scaled()) return viewer.scrollTop / LINE_HEIGHT;
      const range = Math.max(1, spacerHeight() - viewer.clientHeight);
      return (viewer.scrollTop / range) * Math.max(0, state.lastSeq - visibleLines());
    }

    function scrollToLine(seq, position) {
      const index = Math.max(0, seq - 1);
      const offset = position === "center" ? Math.floor(visibleLines() / 2) : 0;
      const first = Math.max(0, index - offset);
      if (!scaled()) {
        viewer.scrollTop = first * LINE_HEIGHT;
      } else {
        const range = Math.max(1, spacerHeight() - viewer.clientHeight);
        viewer.scrollTop = (first / Math.max(1, state.lastSeq - visibleLines())) * range;
      }
      render();
    }

    function atBottom() {
      return viewer.scrollTop + viewer.clientHeight >= viewer.scrollHeight - 2 * LINE_HEIGHT;
    }

    // --- rendering ----------------------------------------------------------
    function highlight(element, needle) {
      if (!needle) return;
      const lower = needle.toLowerCase();
      const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
      const nodes = [];
      while (walker.nextNode()) nodes.push(walker.currentNode);
      for (const node of nodes) {
        const text = node.nodeValue;
        const at = text.toLowerCase().indexOf(lower);
        if (at < 0) continue;
        const mark = document.createElement("mark");
        const rest = node.splitText(at);
        rest.splitText(needle.length);
        mark.textContent = rest.nodeValue;
        rest.replaceWith(mark);
      }
    }

    function row(seq, top) {
      const line = lineAt(seq);
      const element = document.createElement("div");
      element.className = "log-line";
      element.id = `L${seq}`;
      element.style.top = `${top}px`;
      const number = document.createElement("a");
      number.className = "ln";
      number.href = `#L${seq}`;
      number.textContent = String(seq);
      const text = document.createElement("span");
      text.className = "text";
      if (line) {
        element.classList.add(line.stream);
        text.innerHTML = line.html;  // escaped by the server
        if (state.needle) highlight(text, state.needle);
      } else {
        element.classList.add("loading");
        text.textContent = "…";
      }
      if (seq === state.target) element.classList.add("target");
      if (seq === state.match) element.classList.add("match");
      element.append(number, text);
      return element;
    }

    let frame = 0;
    function schedule() {
      if (!frame) frame = requestAnimationFrame(() => { frame = 0; render(); });
    }

    function render() {
      spacer.style.height = `${spacerHeight()}px`;
      count.textContent = state.attempt >= 1 ? `${state.lastSeq.toLocaleString("en")} lines` : "";
      if (state.lastSeq < 1) { spacer.replaceChildren(); return; }
      const top = topLine();
      const first = Math.max(1, Math.floor(top) + 1 - OVERSCAN);
      const last = Math.min(state.lastSeq, Math.ceil(top) + visibleLines() + OVERSCAN);
      const rows = [];
      for (let seq = first; seq <= last; seq += 1) {
        if (!lineAt(seq)) loadChunk(chunkOf(seq));
        // Rows sit at their line's offset from the line at the top of the view.
        const offset = viewer.scrollTop + (seq - 1 - top) * LINE_HEIGHT;
        rows.push(row(seq, scaled() ? offset : (seq - 1) * LINE_HEIGHT));
      }
      spacer.replaceChildren(...rows);
      trimCache(chunkOf(Math.floor(top) + 1));
    }

    // --- following ----------------------------------------------------------
    let userScrolled = false;
    viewer.addEventListener("wheel", () => { userScrolled = true; }, { passive: true });
    viewer.addEventListener("keydown", () => { userScrolled = true; });
    viewer.addEventListener("mousedown", () => { userScrolled = true; });
    viewer.addEventListener("scroll", () => {
      if (userScrolled && follow) {
        // Scrolling up stops following; scrolling back to the end resumes it.
        follow.checked = atBottom() && !state.finished;
      }
      userScrolled = false;
      schedule();
    }, { passive: true });

    if (follow) {
      follow.addEventListener("change", () => { if (follow.checked) scrollToLine(state.lastSeq); });
    }

    function appendLines(lines) {
      for (const line of lines) {
        store(line);
        if (line.seq > state.lastSeq) state.lastSeq = line.seq;
      }
      render();
      if (follow && follow.checked) viewer.scrollTop = viewer.scrollHeight;
      schedule();
    }

    function stream() {
      if (state.finished || !data.active) return;
      const params = new URLSearchParams({ after: String(state.lastSeq), html: "true" });
      if (state.attempt >= 1) params.set("attempt", String(state.attempt));
      const source = new EventSource(`/api/jobs/${state.jobId}/logs?${params}`);
      let batch = [];
      source.addEventListener("line", (event) => {
        const line = JSON.parse(event.data);
        if (state.attempt < 1) {
          state.attempt = line.attempt;
          const empty = document.getElementById("log-empty");
          if (empty) empty.remove();
        }
        batch.push(line);
        if (batch.length === 1) {
          requestAnimationFrame(() => { const lines = batch; batch = []; appendLines(lines); });
        }
      });
      source.addEventListener("error", () => {
        // The browser reconnects to the same URL. Opened before the job
        // started, that URL names no attempt, so after a retry the server
        // would resume the new attempt from this attempt's last seq and skip
        // its first lines. Reopen instead, pinned to the attempt shown.
        if (!params.has("attempt") && state.attempt >= 1 && !state.finished) {
          source.close();
          setTimeout(stream, 1000);
        }
      });
      source.addEventListener("end", () => {
        source.close();
        state.finished = true;
        if (follow) follow.checked = false;
        if (window.minijenkinRefresh) window.minijenkinRefresh();
      });
    }

    // --- line links ---------------------------------------------------------
    function showHash() {
      const match = /^#L(\d+)$/.exec(window.location.hash);
      if (!match) return false;
      state.target = Number(match[1]);
      if (follow) follow.checked = false;
      scrollToLine(state.target, "center");
      return true;
    }
    window.addEventListener("hashchange", showHash);

    // --- search -------------------------------------------------------------
    // At 200,000 lines a request, enough for the largest stored log.
    const FIND_MAX_REQUESTS = 20000;
    async function find(direction) {
      const needle = findText.value;
      if (!needle || state.attempt < 1) return;
      if (needle !== state.needle) { state.needle = needle; state.match = null; }
      const start = state.match !== null ? state.match
        : (direction === "next" ? Math.floor(topLine()) : 0);
      const params = new URLSearchParams({
        q: needle, attempt: String(state.attempt), start: String(start), direction,
      });
      findStatus.textContent = "searching…";
      try {
        // Each request reads a bounded part of the log and returns where to
        // continue, so a long log is searched in several requests.
        let result = null;
        for (let part = 0; part < FIND_MAX_REQUESTS; part++) {
          const response = await fetch(`/api/jobs/${state.jobId}/logs/find?${params}`,
            { credentials: "same-origin", headers: { "Accept": "application/json" } });
          result = await response.json();
          if (!response.ok) throw new Error(result.detail || `HTTP ${response.status}`);
          if (result.seq !== null || result.continue_from === null) break;
          params.set("start", String(result.continue_from));
          findStatus.textContent = `searching… (line ${result.continue_from})`;
        }
        if (result.seq === null) {
          findStatus.textContent = direction === "next" ? "no match below" : "no match above";
        } else {
          state.match = result.seq;
          findStatus.textContent = `line ${result.seq}`;
          if (follow) follow.checked = false;
          scrollToLine(result.seq, "center");
        }
      } catch (error) {
        findStatus.textContent = `search failed: ${error.message}`;
      }
      render();
    }
    findForm.addEventListener("submit", (event) => { event.preventDefault(); find("next"); });
    document.getElementById("log-find-previous").addEventListener("click", () => find("previous"));

    // --- start: at the tail, or at the linked line --------------------------
    for (const line of data.lines) store(line);
    render();
    if (!showHash()) scrollToLine(state.lastSeq);
    stream();
  });
})();
