// Building elements without innerHTML: every text is a text node, so nothing a customer or an owner typed
// can become markup.
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    element.setAttribute(name, value === true ? "" : String(value));
  }
  element.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return element;
}

export function say(region, text, tone = "info") {
  region.textContent = text;
  region.dataset.tone = tone;
}
