/**
 * A line chart as a standalone SVG document, for `npm run bench`: one line
 * per server, a logarithmic x axis (subscriber counts) and a linear y axis
 * from zero (deliveries per second). No dependencies; the text is escaped.
 */

/** One line of the chart: a name for the legend and its points. */
export interface Series {
  readonly name: string
  readonly points: ReadonlyArray<{ readonly x: number; readonly y: number }>
}

/** What the chart shows. */
export interface Chart {
  readonly title: string
  readonly subtitle: string
  readonly xLabel: string
  readonly yLabel: string
  readonly series: ReadonlyArray<Series>
}

const colors = ["#7f7f7f", "#1f77b4", "#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"]
const width = 760
const height = 440
const plot = { left: 80, right: 560, top: 70, bottom: 380 }

const escape = (text: string) =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")

/** 1.2M, 850k, 12 */
export const short = (n: number): string =>
  n >= 1e6
    ? `${Number((n / 1e6).toFixed(2))}M`
    : n >= 1e3
    ? `${Number((n / 1e3).toFixed(1))}k`
    : `${Number(n.toFixed(1))}`

// a round step giving about five ticks up to `max`
const step = (max: number) => {
  const raw = max / 5
  const power = 10 ** Math.floor(Math.log10(raw))
  return [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw)!
}

/** Renders the chart; points that are not finite numbers are left out. */
export const render = (chart: Chart): string => {
  const series = chart.series.map((s) => ({
    ...s,
    points: s.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y) && p.x > 0)
  }))
  const xs = [...new Set(series.flatMap((s) => s.points.map((p) => p.x)))].sort((a, b) => a - b)
  const maxY = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p.y)))
  const yStep = step(maxY)
  const yTop = Math.ceil(maxY / yStep) * yStep
  const [xMin, xMax] = xs.length === 0 ? [1, 10] : [xs[0]!, xs.at(-1)!]
  // a log axis with half a decade of margin on either side
  const lo = Math.log10(xMin) - 0.15
  const hi = Math.log10(Math.max(xMax, xMin * 1.0001)) + 0.15
  const x = (v: number) => plot.left + ((Math.log10(v) - lo) / (hi - lo)) * (plot.right - plot.left)
  const y = (v: number) => plot.bottom - (v / yTop) * (plot.bottom - plot.top)
  const out: Array<string> = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${plot.left}" y="28" font-size="16" font-weight="bold">${escape(chart.title)}</text>`,
    `<text x="${plot.left}" y="48" fill="#555555">${escape(chart.subtitle)}</text>`
  ]
  for (let v = 0; v <= yTop + yStep / 2; v += yStep) {
    out.push(
      `<line x1="${plot.left}" x2="${plot.right}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#e0e0e0"/>`,
      `<text x="${plot.left - 8}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${short(v)}</text>`
    )
  }
  for (const v of xs) {
    out.push(
      `<line x1="${x(v).toFixed(1)}" x2="${x(v).toFixed(1)}" y1="${plot.top}" y2="${plot.bottom}" stroke="#f0f0f0"/>`,
      `<text x="${x(v).toFixed(1)}" y="${plot.bottom + 18}" text-anchor="middle">${v.toLocaleString("en-US")}</text>`
    )
  }
  out.push(
    `<line x1="${plot.left}" x2="${plot.right}" y1="${plot.bottom}" y2="${plot.bottom}" stroke="#333333"/>`,
    `<line x1="${plot.left}" x2="${plot.left}" y1="${plot.top}" y2="${plot.bottom}" stroke="#333333"/>`,
    `<text x="${(plot.left + plot.right) / 2}" y="${plot.bottom + 42}" text-anchor="middle">${
      escape(chart.xLabel)
    }</text>`,
    `<text transform="translate(20 ${(plot.top + plot.bottom) / 2}) rotate(-90)" text-anchor="middle">${
      escape(chart.yLabel)
    }</text>`
  )
  series.forEach((s, i) => {
    const color = colors[i % colors.length]!
    const points = [...s.points].sort((a, b) => a.x - b.x)
    if (points.length > 1) {
      const path = points.map((p) => `${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`).join(" ")
      out.push(`<polyline points="${path}" fill="none" stroke="${color}" stroke-width="2.5"/>`)
    }
    for (const p of points) {
      out.push(
        `<circle cx="${x(p.x).toFixed(1)}" cy="${y(p.y).toFixed(1)}" r="4" fill="${color}">` +
          `<title>${escape(`${s.name}: ${short(p.y)} at ${p.x}`)}</title></circle>`
      )
    }
    const legendY = plot.top + 10 + i * 22
    out.push(
      `<line x1="${plot.right + 24}" x2="${
        plot.right + 48
      }" y1="${legendY}" y2="${legendY}" stroke="${color}" stroke-width="2.5"/>`,
      `<text x="${plot.right + 56}" y="${legendY + 4}">${escape(s.name)}</text>`
    )
  })
  out.push("</svg>", "")
  return out.join("\n")
}
