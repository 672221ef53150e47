/**
 * The operator's page (served at /admin by every effect-lhttp node,
 * docs/operations.md): the cluster's state from `GET /admin/stream`
 * (Server-Sent Events, every second) with its charts (uPlot), a channel's
 * frames from `GET /admin/tail`, the server API's actions through
 * `POST /admin/api/<operation>`. The session is an HttpOnly cookie. Bundled
 * with uPlot by scripts/build-admin.mjs into admin.js and admin.css.
 */
import uPlot from "uplot"
import "uplot/dist/uPlot.min.css"
import "./styles.css"

/** A node as the state stream says it (the server API's `info`). */
interface NodeInfo {
  readonly id: string
  readonly version: string
  readonly uptime: number
  readonly ready: boolean
  readonly connections: number
  readonly transports: Readonly<Record<string, number>>
  readonly subscriptions: number
  readonly channels: number
  readonly messagesIn: number
  readonly framesOut: number
  readonly memory?: number
}

/** The cluster's state, every second. */
interface State {
  readonly time: number
  readonly nodes: ReadonlyArray<NodeInfo>
  readonly complete: boolean
  readonly channels: ReadonlyArray<{ readonly name: string; readonly subscribers: number }>
  readonly channelCount: number
}

/** A refusal of the server API, as the page's route answers it. */
interface Refusal {
  readonly reason: string
  readonly message: string
}

const $ = <E extends Element = HTMLInputElement>(selector: string): E => document.querySelector<E>(selector)!

/** An element with text, and children. */
const element = (tag: string, text?: string, ...children: Array<Node>): HTMLElement => {
  const node = document.createElement(tag)
  if (text !== undefined) node.textContent = text
  node.append(...children)
  return node
}

const bytes = (n: number | undefined) =>
  n === undefined ? "-" : n > 1 << 30 ? `${(n / (1 << 30)).toFixed(1)} GiB` : `${Math.round(n / (1 << 20))} MiB`
const duration = (s: number) =>
  s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`

/** Calls an operation of the server API through the page's own route: its answer, or the refusal's message. */
const call = async <A>(operation: string, request: unknown): Promise<A> => {
  const response = await fetch(`/admin/api/${operation}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(request)
  })
  const answer = await response.json() as A | Refusal
  if (!response.ok) {
    const { message, reason } = answer as Refusal
    throw new Error(`${reason}: ${message}`)
  }
  return answer as A
}

// ---- the cluster's state, and its history for the charts ----

/** Seconds the charts keep. */
const span = 300
const times: Array<number> = []
const totals = { connections: [] as Array<number>, messagesIn: [] as Array<number>, framesOut: [] as Array<number> }
// the last state's counters by node, for the rates
let previous:
  | Map<string, { readonly messagesIn: number; readonly framesOut: number; readonly time: number }>
  | undefined

const rates = (nodes: ReadonlyArray<NodeInfo>, time: number) => {
  const now = new Map(nodes.map((node) => [node.id, { messagesIn: node.messagesIn, framesOut: node.framesOut, time }]))
  const perNode = new Map<string, { readonly in: number; readonly out: number }>()
  for (const [id, counters] of now) {
    const before = previous?.get(id)
    const seconds = before === undefined ? 0 : (counters.time - before.time) / 1000
    perNode.set(
      id,
      before === undefined || seconds <= 0 ? { in: 0, out: 0 } : {
        in: Math.max(0, (counters.messagesIn - before.messagesIn) / seconds),
        out: Math.max(0, (counters.framesOut - before.framesOut) / seconds)
      }
    )
  }
  previous = now
  return perNode
}

const chartOf = (target: HTMLElement, series: ReadonlyArray<{ readonly label: string; readonly stroke: string }>) =>
  new uPlot(
    {
      width: target.clientWidth || 500,
      height: 160,
      scales: { x: { time: true }, y: { range: (_self, _min, max) => [0, Math.max(1, max * 1.1)] } },
      series: [{}, ...series.map(({ label, stroke }) => ({ label, stroke, width: 1.5 }))],
      axes: [{}, { size: 50 }]
    },
    [[]],
    target
  )

let charts: { readonly connections: uPlot; readonly messages: uPlot } | undefined

const drawCharts = () => {
  charts ??= {
    connections: chartOf($("#chart-connections"), [{ label: "connections", stroke: "#2f6fde" }]),
    messages: chartOf($("#chart-messages"), [
      { label: "messages in/s", stroke: "#2f6fde" },
      { label: "frames out/s", stroke: "#d9822b" }
    ])
  }
  charts.connections.setData([times, totals.connections])
  charts.messages.setData([times, totals.messagesIn, totals.framesOut])
}

let channelList: State["channels"] = []

const showChannels = () => {
  const search = $("#channel-search").value.trim()
  $("#channels tbody").replaceChildren(
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
        element("td", "", inspect)
      )
    })
  )
}

const showState = (state: State) => {
  const perNode = rates(state.nodes, state.time)
  let connections = 0
  let messagesIn = 0
  let framesOut = 0
  $("#nodes tbody").replaceChildren(...state.nodes.map((node) => {
    const rate = perNode.get(node.id) ?? { in: 0, out: 0 }
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
  const summary = $<HTMLElement>("#summary")
  summary.textContent = `${state.nodes.length} node${state.nodes.length === 1 ? "" : "s"}, ${connections} connections`
  summary.dataset["connections"] = String(connections)
  times.push(state.time / 1000)
  totals.connections.push(connections)
  totals.messagesIn.push(Math.round(messagesIn))
  totals.framesOut.push(Math.round(framesOut))
  if (times.length > span) {
    times.shift()
    for (const values of Object.values(totals)) values.shift()
  }
  drawCharts()
  channelList = state.channels
  $("#channel-count").textContent = `(${state.channelCount} with subscribers)`
  showChannels()
}

const watch = () => {
  const events = new EventSource("/admin/stream")
  events.addEventListener("state", (event) => showState(JSON.parse(event.data) as State))
  events.addEventListener("unavailable", (event) => {
    $("#complete").textContent = `(unavailable: ${(JSON.parse(event.data) as Refusal).reason})`
  })
}

// ---- a channel: presence, last history ----

interface Member {
  readonly connection: string
  readonly node: string
  readonly user?: string
}

interface Stored {
  readonly offset: number
  readonly command: string
  readonly body: string
}

const inspectChannel = async () => {
  const channel = $("#inspect-channel").value.trim()
  if (channel === "") return
  const presence = $("#presence")
  const history = $("#history")
  try {
    const { members } = await call<{ readonly members: ReadonlyArray<Member> }>("presence", { channel })
    presence.replaceChildren(
      ...members.map((member) => element("li", `${member.user ?? "-"} ${member.connection} on ${member.node}`))
    )
  } catch (error) {
    presence.replaceChildren(element("li", (error as Error).message))
  }
  try {
    const { messages } = await call<{ readonly messages: ReadonlyArray<Stored> }>("history", {
      channel,
      limit: 20,
      reverse: true
    })
    history.replaceChildren(
      ...messages.map((message) => element("li", `${message.offset} ${message.command}: ${message.body}`))
    )
  } catch (error) {
    history.replaceChildren(element("li", (error as Error).message))
  }
}

// ---- the live tail ----

/** Lines the tail keeps on the page. */
const maxTailLines = 500
let tail: EventSource | undefined
let paused = false

const startTail = () => {
  const target = $("#tail-channel").value.trim()
  const kind = $<HTMLSelectElement>("#tail-kind").value === "user" ? "user" : "channel"
  if (target === "") return
  tail?.close()
  const out = $<HTMLElement>("#tail")
  const pause = $<HTMLButtonElement>("#tail-pause")
  out.textContent = ""
  paused = false
  pause.disabled = false
  pause.textContent = "Pause"
  tail = new EventSource(`/admin/tail?${kind}=${encodeURIComponent(target)}`)
  tail.addEventListener("tailing", () => $("#tail-state").textContent = `tailing ${kind} ${target}`)
  tail.addEventListener("frame", (event) => {
    if (paused) return
    const { connection, text, time } = JSON.parse(event.data) as {
      readonly text: string
      readonly time: number
      readonly connection?: string
    }
    const to = connection === undefined ? "" : ` to ${connection}`
    out.append(`${new Date(time).toISOString().slice(11, 23)}${to} ${text.replaceAll("\r\n", "\n  ")}\n`)
    while (out.childNodes.length > maxTailLines) out.firstChild!.remove()
    out.scrollTop = out.scrollHeight
  })
  tail.onerror = () => $("#tail-state").textContent = "tail interrupted, retrying"
}

// ---- actions ----

const requestOf = (operation: string, form: HTMLFormElement) => {
  const fields = Object.fromEntries(
    Array.from(form.querySelectorAll("input")).filter((input) => input.value !== "").map((input) => [
      input.name,
      input.value
    ])
  )
  if (operation === "unsubscribe") return { user: fields["user"], channels: [fields["channels"]] }
  return fields
}

const act = async (event: SubmitEvent) => {
  event.preventDefault()
  const form = event.target as HTMLFormElement
  const operation = form.dataset["operation"]!
  const outcome = $<HTMLElement>("#outcome")
  // each action is confirmed first
  if (!confirm(`${operation}: ${JSON.stringify(requestOf(operation, form))}?`)) return
  try {
    const answer = await call(operation, requestOf(operation, form))
    outcome.className = "done"
    outcome.textContent = `${operation}: ${JSON.stringify(answer)}`
  } catch (error) {
    outcome.className = "failed"
    outcome.textContent = `${operation} refused: ${(error as Error).message}`
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
  document.querySelectorAll<HTMLFormElement>("form[data-operation]").forEach((form) =>
    form.addEventListener("submit", (event) => void act(event))
  )
}
