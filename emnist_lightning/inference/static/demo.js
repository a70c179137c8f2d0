// The drawing page: strokes on #pad are sent as a PNG to /predict while drawing; the reply's top
// characters become bars and its 28x28 view is drawn on #view. /model says what the model reads.
"use strict";

const pad = document.getElementById("pad");
const ink = pad.getContext("2d");
const view = document.getElementById("view");
const predictions = document.getElementById("predictions");
const statusLine = document.getElementById("status");
const SEND_EVERY_MS = 150; // while a stroke goes on

let drawing = false;
let lastSent = 0;
let pending = false; // a drawing changed while a request was out
let inFlight = false;
window.lastPrediction = null; // the latest reply, for tests and the curious

function clearPad() {
  ink.fillStyle = "#fff";
  ink.fillRect(0, 0, pad.width, pad.height);
  view.getContext("2d").clearRect(0, 0, view.width, view.height);
  predictions.replaceChildren();
  statusLine.textContent = "Draw to see predictions.";
  window.lastPrediction = null;
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * (pad.width / box.width), (event.clientY - box.top) * (pad.height / box.height)];
}

pad.addEventListener("pointerdown", (event) => {
  drawing = true;
  pad.setPointerCapture(event.pointerId);
  const [x, y] = point(event);
  ink.beginPath();
  ink.moveTo(x, y);
  ink.lineTo(x, y);
  ink.stroke();
});

pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const [x, y] = point(event);
  ink.lineTo(x, y);
  ink.stroke();
  if (performance.now() - lastSent > SEND_EVERY_MS) send();
});

function endStroke() {
  if (!drawing) return;
  drawing = false;
  send();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

function send() {
  if (inFlight) {
    pending = true;
    return;
  }
  inFlight = true;
  lastSent = performance.now();
  pad.toBlob(async (png) => {
    try {
      const reply = await fetch("/predict", { method: "POST", body: png, headers: { "Content-Type": "image/png" } });
      show(await reply.json());
    } catch (error) {
      statusLine.textContent = `The model server did not answer (${error}).`;
    } finally {
      inFlight = false;
      if (pending) {
        pending = false;
        send();
      }
    }
  }, "image/png");
}

function show(result) {
  window.lastPrediction = result;
  if (!result.top) {
    predictions.replaceChildren();
    statusLine.textContent = result.message;
    return;
  }
  predictions.replaceChildren(...result.top.map(bar));
  statusLine.textContent = "";
  drawView(result.view);
}

function bar({ character, probability }) {
  const row = document.createElement("li");
  row.dataset.probability = probability;
  const char = Object.assign(document.createElement("span"), { className: "char", textContent: character });
  const track = Object.assign(document.createElement("span"), { className: "bar" });
  const fill = document.createElement("span");
  fill.style.width = `${(probability * 100).toFixed(1)}%`;
  track.append(fill);
  const value = Object.assign(document.createElement("span"), {
    className: "value",
    textContent: `${(probability * 100).toFixed(1)}%`,
  });
  row.append(char, track, value);
  return row;
}

function drawView(rows) {
  const side = rows.length;
  const image = new ImageData(side, side);
  rows.flat().forEach((level, i) => {
    const grey = Math.round(level * 255);
    image.data.set([grey, grey, grey, 255], i * 4);
  });
  const small = new OffscreenCanvas(side, side);
  small.getContext("2d").putImageData(image, 0, 0);
  const context = view.getContext("2d");
  context.imageSmoothingEnabled = false;
  context.drawImage(small, 0, 0, view.width, view.height);
}

ink.lineWidth = 22;
ink.lineCap = "round";
ink.lineJoin = "round";
ink.strokeStyle = "#000";
document.getElementById("clear").addEventListener("click", clearPad);
clearPad();

// The invitation names what this model can read (a Digits model, digits only).
fetch("/model")
  .then((reply) => reply.json())
  .then((model) => { document.getElementById("what").textContent = model.what_to_draw; })
  .catch(() => {});
