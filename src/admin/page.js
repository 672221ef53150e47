// The operator's page (served at /admin by every effect-lhttp node, docs/operations.md): the cluster's state
// from GET /admin/stream (Server-Sent Events, every second), a channel's frames from GET /admin/tail, the
// server API's actions through POST /admin/api/<operation>. No dependencies; the session is an HttpOnly cookie.
/* global document, EventSource, FormData */

const $ = (selector) => document.querySelector(selector)

/** An element with text, and children. */
const element = (tag, text, ...children) => {
  const node = document.createElement(tag)
  if (text !== undefined) node.textContent = text
  node.append(...children)
  return node
}

const bytes = (n) =>
  n === undefined ? "-" : n > 1 << 30 ? `${(n / (1 << 30)).toFixed(1)} GiB` : `${Math.round(n / (1 << 20))} MiB`
const duration = (s) => s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`

/** Calls an operation of the server API through the page's own route. */
const call = async (operation, request) => {
  const response = await fetch(`/admin/api/${operation}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(request)
  })
  const answer = await response.json()
  if (!response.ok) throw new Error(`${answer.reason}: ${answer.message}`)
  return answer
}

// ---- the cluster's state, and its history for the charts ----

const span = 300
const samples = [] // { connections, messagesIn, framesOut } per state, the last `span` seconds
let previous // the last state's counters by node, for the rates

const rates = (nodes, time) => {
  const now = new Map(nodes.map((node) => [node.id, { messagesIn: node.messagesIn, framesOut: node.framesOut, time }]))
  const perNode = new Map()
  for (const [id, counters] of now) {
    const before = previous?.get(id)
    const seconds = before === undefined ? 0 : (counters.time - before.time) / 1000
    perNode.set(
      id,
      seconds <= 0 ? { in: 0, out: 0 } : {
        in: Math.max(0, (counters.messagesIn - before.messagesIn) / seconds),
        out: Math.max(0, (counters.framesOut - before.framesOut) / seconds)
      }
    )
  }
  previous = now
  return perNode
}

// across the chart: the samples there are (up to the last `span` seconds)
const polyline = (svg, values, max, className) => {
  const width = 600
  const height = 120
  const points = values.map((value, i) =>
    `${(i / Math.max(1, values.length - 1)) * width},${height - 4 - (value / Math.max(1, max)) * (height - 8)}`
  ).join(" ")
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline")
  line.setAttribute("points", points)
  line.setAttribute("class", className)
  svg.append(line)
}

// the series on one scale, with the scale's top and each series' last value said beside the caption
const chart = (svg, series, label) => {
  svg.setAttribute("viewBox", "0 0 600 120")
  svg.setAttribute("preserveAspectRatio", "none")
  svg.replaceChildren()
  const max = Math.max(1, ...series.flatMap(([values]) => values))
  for (const [values, className] of series) polyline(svg, values, max, className)
  svg.setAttribute("data-max", String(Math.round(max)))
  svg.parentElement.querySelector(".scale").textContent = `${
    label(series.map(([values]) => values.at(-1) ?? 0))
  }; top ${Math.round(max)}; ${Math.round(samples.length / 60 * 10) / 10} min`
}

let channelList = []

const showChannels = () => {
  const search = $("#channel-search").value.trim()
  const body = $("#channels tbody")
  body.replaceChildren(
    ...channelList.filter(({ name }) => search === "" || name.includes(search)).map(({ name, subscribers }) => {
      const inspect = element("button", "inspect")
      inspect.addEventListener("click", () => {
        $("#inspect-channel").value = name
        void inspectChannel()
      })
      return element(
        "tr",
        undefined,
        element("td", name),
        element("td", String(subscribers)),
        element("td", undefined, inspect)
      )
    })
  )
}

const showState = (state) => {
  const perNode = rates(state.nodes, state.time)
  let connections = 0
  let messagesIn = 0
  let framesOut = 0
  $("#nodes tbody").replaceChildren(...state.nodes.map((node) => {
    const rate = perNode.get(node.id)
    connections += node.connections
    messagesIn += rate.in
    framesOut += rate.out
    const transports = Object.entries(node.transports).map(([kind, n]) => `${kind} ${n}`).join(", ")
    return element(
      "tr",
      undefined,
      element("td", node.id),
      element("td", node.version),
      element("td", duration(node.uptime)),
      element("td", node.ready ? "yes" : "no"),
      element("td", String(node.connections)),
      element("td", transports),
      element("td", String(node.subscriptions)),
      element("td", String(node.channels)),
      element("td", rate.in.toFixed(0)),
      element("td", rate.out.toFixed(0)),
      element("td", bytes(node.memory))
    )
  }))
  $("#complete").textContent = state.complete ? "" : "(a node did not answer)"
  $("#summary").textContent = `${state.nodes.length} node${
    state.nodes.length === 1 ? "" : "s"
  }, ${connections} connections`
  $("#summary").dataset.connections = String(connections)
  samples.push({ connections, messagesIn, framesOut })
  if (samples.length > span) samples.shift()
  chart($("#chart-connections"), [[samples.map((sample) => sample.connections), "line-a"]], ([now]) => `now ${now}`)
  chart($("#chart-messages"), [
    [samples.map((sample) => sample.messagesIn), "line-a"],
    [samples.map((sample) => sample.framesOut), "line-b"]
  ], ([inbound, outbound]) => `now ${Math.round(inbound)} in (blue), ${Math.round(outbound)} out (orange)`)
  channelList = state.channels
  $("#channel-count").textContent = `(${state.channelCount} with subscribers)`
  showChannels()
}

const watch = () => {
  const events = new EventSource("/admin/stream")
  events.addEventListener("state", (event) => showState(JSON.parse(event.data)))
  events.addEventListener("unavailable", (event) => {
    $("#complete").textContent = `(unavailable: ${JSON.parse(event.data).message})`
  })
}

// ---- a channel: presence, last history ----

const inspectChannel = async () => {
  const channel = $("#inspect-channel").value.trim()
  if (channel === "") return
  const presence = $("#presence")
  const history = $("#history")
  try {
    const { members } = await call("presence", { channel })
    presence.replaceChildren(
      ...members.map((member) => element("li", `${member.user ?? "-"} ${member.connection} on ${member.node}`))
    )
  } catch (error) {
    presence.replaceChildren(element("li", String(error.message)))
  }
  try {
    const { messages } = await call("history", { channel, limit: 20, reverse: true })
    history.replaceChildren(
      ...messages.map((message) => element("li", `${message.offset} ${message.command}: ${message.body}`))
    )
  } catch (error) {
    history.replaceChildren(element("li", String(error.message)))
  }
}

// ---- the live tail ----

const maxTailLines = 500
let tail // the EventSource of the channel tailed
let paused = false

const startTail = () => {
  const channel = $("#tail-channel").value.trim()
  if (channel === "") return
  tail?.close()
  $("#tail").textContent = ""
  paused = false
  $("#tail-pause").disabled = false
  $("#tail-pause").textContent = "Pause"
  tail = new EventSource(`/admin/tail?channel=${encodeURIComponent(channel)}`)
  tail.addEventListener("tailing", () => $("#tail-state").textContent = `tailing ${channel}`)
  tail.addEventListener("frame", (event) => {
    if (paused) return
    const { text, time } = JSON.parse(event.data)
    const out = $("#tail")
    out.append(`${new Date(time).toISOString().slice(11, 23)} ${text.replaceAll("\r\n", "\n  ")}\n`)
    while (out.childNodes.length > maxTailLines) out.firstChild.remove()
    out.scrollTop = out.scrollHeight
  })
  tail.onerror = () => $("#tail-state").textContent = "tail interrupted, retrying"
}

// ---- actions ----

const requestOf = (operation, form) => {
  const fields = Object.fromEntries(Array.from(new FormData(form)).filter(([, value]) => value !== ""))
  if (operation === "unsubscribe") return { user: fields.user, channels: [fields.channels] }
  return fields
}

const act = async (event) => {
  event.preventDefault()
  const form = event.target
  const operation = form.dataset.operation
  const outcome = $("#outcome")
  // each action is confirmed first
  if (!globalThis.confirm(`${operation}: ${JSON.stringify(requestOf(operation, form))}?`)) return
  try {
    const answer = await call(operation, requestOf(operation, form))
    outcome.className = "done"
    outcome.textContent = `${operation}: ${JSON.stringify(answer)}`
  } catch (error) {
    outcome.className = "failed"
    outcome.textContent = `${operation} refused: ${error.message}`
  }
}

if (!document.body.classList.contains("signed-out")) {
  watch()
  $("#channel-search").addEventListener("input", showChannels)
  $("#inspect").addEventListener("click", () => void inspectChannel())
  $("#tail-start").addEventListener("click", startTail)
  $("#tail-pause").addEventListener("click", () => {
    paused = !paused
    $("#tail-pause").textContent = paused ? "Resume" : "Pause"
  })
  for (const form of document.querySelectorAll("form[data-operation]")) form.addEventListener("submit", act)
}
