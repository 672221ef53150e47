/**
 * Baseline: Socket.IO 4 with rooms, over its WebSocket transport only (no
 * long-polling, no upgrade). `join` puts the socket in a room; `publish`
 * sends a message to everyone in the room with `io.to(room).emit`, as a
 * Socket.IO chat does. On 127.0.0.1:$PORT; logs "listening" when ready.
 *
 * The load speaks Socket.IO's frames itself on the lean raw-socket client
 * (`bench/fanout/client.ts`, protocol `socketio`): `40` to connect, then
 * `42["join",room]` and `42["publish",room,body]`; each delivery is one
 * `42["message",body]` text frame, counted from its header like any other.
 */
import { createServer } from "node:http"
import { Server } from "socket.io"

const http = createServer()
const io = new Server(http, { transports: ["websocket"], serveClient: false, perMessageDeflate: false })

io.on("connection", (socket) => {
  socket.on("join", (room: string) => void socket.join(room))
  socket.on("publish", (room: string, body: string) => void io.to(room).emit("message", body))
})

http.listen(Number(process.env.PORT), "127.0.0.1", () => console.log("listening"))
