// The greeter's public API, on the same gateway listener (same origin) as this page:
// the gateway routes /{project}/{component}/v1{basePath} to each component.
const API = "/demo/greeter/v1";

async function greet(name) {
  const response = await fetch(`${API}/greeting?name=${encodeURIComponent(name)}`);
  const body = await response.json();
  document.getElementById("greeting").textContent = body.greeting;
  const q = body.quote || {};
  document.getElementById("quote").textContent = q.quote ? `“${q.quote}” — ${q.author}` : q.error || "";
}

document.getElementById("form").addEventListener("submit", (event) => {
  event.preventDefault();
  greet(document.getElementById("name").value);
});
greet(document.getElementById("name").value);
