// admin-chart.js: a grouped bar chart in SVG, drawn with the DOM (no
// library, no markup parsed). Colours come from the stylesheet through
// class names; the chart carries a text summary as its accessible name,
// and the page shows the same numbers as a table.

const SVG = 'http://www.w3.org/2000/svg';

/**
 * An SVG element with attributes.
 * @template {keyof SVGElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, string|number>} [attrs]
 * @param {...(Node|string)} children
 * @returns {SVGElementTagNameMap[K]}
 */
export function svgEl(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    const lower = name.toLowerCase();
    if (lower === 'style' || lower.startsWith('on') || lower === 'href') {
      throw new Error(`parley: refusing attribute ${name}`);
    }
    node.setAttribute(name, String(value));
  }
  node.append(...children);
  return node;
}

/**
 * @typedef {Object} Series one kind of bar
 * @property {string} name as people read it, "Failed sign-ins"
 * @property {string} className its colour in the stylesheet, "failed"
 * @property {number[]} values one per group
 */

/**
 * A round top for the axis: 1, 2, 5, 10, 20, 50, … at least max.
 * @param {number} max
 */
function niceMax(max) {
  if (max <= 4) return 4;
  const pow = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 5, 10]) {
    if (m * pow >= max) return m * pow;
  }
  return 10 * pow;
}

/**
 * Draws bars for each group (such as an hour), one per series, with a
 * y axis, grid lines and a label under every few groups.
 * @param {Object} opts
 * @param {string[]} opts.labels the groups' labels, such as "14:00"
 * @param {Series[]} opts.series
 * @param {string} opts.summary the accessible name: what the chart says
 * @param {number} [opts.labelEvery] label every nth group
 * @returns {SVGSVGElement}
 */
export function barChart(opts) {
  const width = 720;
  const height = 240;
  const left = 40;
  const right = 8;
  const top = 12;
  const bottom = 28;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const groups = opts.labels.length;
  const max = niceMax(Math.max(0, ...opts.series.flatMap((s) => s.values)));
  const every = opts.labelEvery ?? 3;

  const svg = svgEl('svg', {
    viewBox: `0 0 ${width} ${height}`,
    class: 'bar-chart',
    role: 'img',
    'aria-label': opts.summary,
    preserveAspectRatio: 'xMidYMid meet',
  });
  svg.append(svgEl('title', {}, opts.summary));

  // Grid lines and the y axis's numbers: 0, ¼, ½, ¾ and the top.
  const grid = svgEl('g', { class: 'chart-grid', 'aria-hidden': 'true' });
  for (let i = 0; i <= 4; i++) {
    const value = (max * i) / 4;
    const y = top + plotH - (plotH * i) / 4;
    grid.append(svgEl('line', { x1: left, x2: width - right, y1: y, y2: y }));
    if (Number.isInteger(value)) {
      grid.append(svgEl('text', { x: left - 6, y: y + 4, 'text-anchor': 'end', class: 'chart-tick' }, String(value)));
    }
  }
  svg.append(grid);

  const bars = svgEl('g', { class: 'chart-bars', 'aria-hidden': 'true' });
  const groupW = groups > 0 ? plotW / groups : plotW;
  const gap = Math.min(4, groupW * 0.2);
  const barW = Math.max(1, (groupW - gap) / Math.max(1, opts.series.length));
  for (let g = 0; g < groups; g++) {
    const x0 = left + g * groupW + gap / 2;
    opts.series.forEach((s, i) => {
      const v = s.values[g] ?? 0;
      const h = max > 0 ? (plotH * v) / max : 0;
      const rect = svgEl('rect', {
        x: (x0 + i * barW).toFixed(2),
        y: (top + plotH - h).toFixed(2),
        width: Math.max(0.5, barW - 0.5).toFixed(2),
        height: h.toFixed(2),
        class: `bar ${s.className}`,
        'data-value': v,
      });
      rect.append(svgEl('title', {}, `${opts.labels[g]}: ${s.name} ${v}`));
      bars.append(rect);
    });
    if (g % every === 0) {
      bars.append(svgEl('text', {
        x: (left + g * groupW + groupW / 2).toFixed(2),
        y: height - 8,
        'text-anchor': 'middle',
        class: 'chart-tick',
      }, opts.labels[g]));
    }
  }
  svg.append(bars);
  svg.append(svgEl('line', { x1: left, x2: width - right, y1: top + plotH, y2: top + plotH, class: 'chart-axis', 'aria-hidden': 'true' }));
  return svg;
}
