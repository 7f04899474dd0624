// Small DOM helpers shared by the page's modules.

/** $ is document.querySelector. */
export const $ = (s) => document.querySelector(s);

/** t0 is when the page started; candidate times count from it. */
export const t0 = performance.now();

/** ms writes a duration in milliseconds. */
export const ms = (t) => Math.round(t) + ' ms';

/** addRow appends a row of text cells to a table's tbody and returns it. */
export function addRow(table, cells, cls) {
  const tr = document.createElement('tr');
  if (cls) tr.className = cls;
  for (const c of cells) {
    const td = document.createElement('td');
    td.textContent = c == null ? '' : String(c);
    tr.appendChild(td);
  }
  $(table + ' tbody').appendChild(tr);
  return tr;
}

/** setConn shows the signaling connection's state in the header. */
export function setConn(text, cls) {
  const el = $('#conn');
  el.textContent = text;
  el.className = 'pill ' + (cls || '');
}
