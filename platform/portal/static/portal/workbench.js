// The SQL workbench's progressive enhancement (the pages work without it): Ctrl+Enter runs the query,
// the result grid is paged, a chart draws two columns of the result, and a job page follows its progress.
// Values from the data only ever reach the page as text nodes or SVG attributes, never as markup.
"use strict";

(function () {
  const PAGE_ROWS = 100;
  const SVG = "http://www.w3.org/2000/svg";

  function runOnCtrlEnter() {
    const sql = document.getElementById("id_sql");
    const run = document.getElementById("run-button");
    if (!sql || !run) return;
    sql.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        run.click();
      }
    });
  }

  function pageGrid() {
    const grid = document.getElementById("result-grid");
    const pager = document.getElementById("result-pager");
    if (!grid || !pager) return;
    const rows = Array.from(grid.tBodies[0].rows);
    const pages = Math.ceil(rows.length / PAGE_ROWS);
    if (pages <= 1) return;
    function show(page) {
      rows.forEach((row, index) => { row.hidden = Math.floor(index / PAGE_ROWS) !== page; });
      pager.querySelectorAll("button").forEach((button) => {
        if (Number(button.dataset.page) === page) button.setAttribute("aria-current", "page");
        else button.removeAttribute("aria-current");
      });
    }
    const label = document.createElement("span");
    label.textContent = pager.dataset.pageLabel || "Page";  // the template's translated words
    pager.appendChild(label);
    for (let page = 0; page < pages; page += 1) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "secondary small";
      button.dataset.page = String(page);
      button.textContent = String(page + 1);
      const rowsLabel = pager.dataset.rowsLabel || "Rows {first} to {last}";
      button.setAttribute("aria-label", rowsLabel.replace("{first}", page * PAGE_ROWS + 1).replace("{last}", Math.min(rows.length, (page + 1) * PAGE_ROWS)));
      button.addEventListener("click", () => show(page));
      pager.appendChild(button);
    }
    pager.hidden = false;
    show(0);
  }

  function isNumeric(type) {
    return /^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|FLOAT|DOUBLE|REAL|DECIMAL)/i.test(type || "");
  }

  function svg(name, attributes) {
    const node = document.createElementNS(SVG, name);
    Object.entries(attributes || {}).forEach(([key, value]) => node.setAttribute(key, String(value)));
    return node;
  }

  function label(x, y, text, anchor) {
    const node = svg("text", { x, y, "font-size": 11, "text-anchor": anchor || "middle", fill: "#1d2733" });
    node.textContent = text;
    return node;
  }

  // Draw y against x: a line, or bars; x is taken in row order (the query's ORDER BY decides it).
  function drawChart(canvas, rows, x, y, kind) {
    canvas.replaceChildren();
    const points = rows
      .map((row) => [row[x], typeof row[y] === "number" ? row[y] : Number(row[y])])
      .filter(([, value]) => Number.isFinite(value));
    if (!points.length) {
      canvas.textContent = canvas.dataset.empty || "Nothing to draw: the Y column has no numbers.";
      return;
    }
    const width = 720, height = 320, left = 64, right = 16, top = 16, bottom = 56;
    const values = points.map(([, value]) => value);
    const low = Math.min(0, ...values), high = Math.max(0, ...values);
    const span = high - low || 1;
    const step = (width - left - right) / points.length;
    const yOf = (value) => top + (height - top - bottom) * (1 - (value - low) / span);
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "result-chart", "data-kind": kind, "data-points": points.length });
    chart.appendChild(svg("line", { x1: left, x2: width - right, y1: yOf(0), y2: yOf(0), stroke: "#5b6876" }));
    [low, high].forEach((value) => chart.appendChild(label(left - 6, yOf(value) + 4, value.toLocaleString(), "end")));
    if (kind === "bar") {
      points.forEach(([, value], index) => {
        const y0 = yOf(Math.max(value, 0)), y1 = yOf(Math.min(value, 0));
        chart.appendChild(svg("rect", { x: left + index * step + step * 0.1, y: y0, width: Math.max(step * 0.8, 1), height: Math.max(y1 - y0, 1), fill: "#0b7a5b" }));
      });
    } else {
      const path = points.map(([, value], index) => `${index ? "L" : "M"}${(left + (index + 0.5) * step).toFixed(1)},${yOf(value).toFixed(1)}`).join(" ");
      chart.appendChild(svg("path", { d: path, fill: "none", stroke: "#0b7a5b", "stroke-width": 2 }));
    }
    const every = Math.max(1, Math.ceil(points.length / 8));
    points.forEach(([key], index) => {
      if (index % every === 0) chart.appendChild(label(left + (index + 0.5) * step, height - bottom + 16, String(key)));
    });
    canvas.appendChild(chart);
  }

  function chartResult() {
    const data = document.getElementById("result-data");
    const box = document.getElementById("chart");
    if (!data || !box) return;
    const result = JSON.parse(data.textContent);
    if (!result.rows.length || result.columns.length < 2) return;
    const xs = document.getElementById("chart-x"), ys = document.getElementById("chart-y");
    const kind = document.getElementById("chart-kind");
    const numeric = result.columns.map((column, index) => [column, index]).filter(([column]) => isNumeric(column.type));
    if (!numeric.length) return;
    result.columns.forEach((column, index) => xs.appendChild(new Option(column.name, String(index))));
    numeric.forEach(([column, index]) => ys.appendChild(new Option(column.name, String(index))));
    const firstOther = numeric.find(([, index]) => index !== 0);
    xs.value = "0";
    ys.value = String((firstOther || numeric[0])[1]);
    // Over time or a number: a line; over categories: bars.
    kind.value = /^(DATE|TIME|TIMESTAMP)/i.test(result.columns[0].type) || isNumeric(result.columns[0].type) ? "line" : "bar";
    const draw = () => drawChart(document.getElementById("chart-canvas"), result.rows, Number(xs.value), Number(ys.value), kind.value);
    [xs, ys, kind].forEach((control) => control.addEventListener("change", draw));
    box.hidden = false;
    draw();
  }

  function followJob() {
    const box = document.getElementById("job");
    if (!box) return;
    const url = box.dataset.stateUrl;
    async function poll() {
      let state;
      try {
        const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
        if (!response.ok) return setTimeout(poll, 3000);
        state = await response.json();
      } catch (error) {
        return setTimeout(poll, 3000);
      }
      document.getElementById("job-state").textContent = state.state_label || state.state;
      document.getElementById("job-rows").textContent = String(state.rows_written);
      const error = document.getElementById("job-error");
      if (state.error) {
        error.textContent = `${state.error.code}: ${state.error.message}`;
        error.hidden = false;
      }
      document.getElementById("job-download").hidden = state.state !== "succeeded";
      document.getElementById("job-cancel").hidden = state.finished;
      if (!state.finished) setTimeout(poll, 1000);
    }
    poll();
  }

  document.addEventListener("DOMContentLoaded", () => {
    runOnCtrlEnter();
    pageGrid();
    chartResult();
    followJob();
  });
})();
