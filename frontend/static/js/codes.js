// codes.js: shows a fresh set of recovery codes with "Download as text" and
// "Copy", used after enrollment and after regenerating the codes.

import { el } from './ui.js';

/**
 * The text file a person keeps.
 * @param {string[]} codes
 * @param {string} username
 */
function codesText(codes, username) {
  const lines = [
    'Parley recovery codes' + (username ? ` for ${username}` : ''),
    `Site: ${window.location.origin}`,
    `Created: ${new Date().toISOString()}`,
    '',
    'Each code signs you in once if you cannot use your authenticator app.',
    'Keep this file somewhere safe and private.',
    '',
    ...codes,
    '',
  ];
  return lines.join('\n');
}

/**
 * Starts a download of text as a file, without leaving the page.
 * @param {string} text
 * @param {string} filename
 */
function downloadText(text, filename) {
  const blob = new Blob([text], { type: 'text/plain;charset=utf-8' });
  const url = URL.createObjectURL(blob);
  const link = el('a', { attrs: { href: url, download: filename }, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  // Give the browser time to start the download before the URL goes away.
  window.setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/**
 * Builds the list of codes and its buttons.
 *
 * Ids: #recovery-codes (the list, one <li> per code), #download-codes,
 * #copy-codes, #codes-status (what the buttons did).
 * @param {string[]} codes
 * @param {string} username for the file's header, may be ''
 * @returns {HTMLElement}
 */
export function codesPanel(codes, username) {
  const list = el('ol', { id: 'recovery-codes', className: 'codes' });
  for (const code of codes) {
    list.append(el('li', { text: String(code) }));
  }

  const status = el('p', { id: 'codes-status', className: 'muted small', attrs: { role: 'status' } });

  const download = el('button', {
    id: 'download-codes', className: 'btn secondary', text: 'Download as text', attrs: { type: 'button' },
  });
  download.addEventListener('click', () => {
    downloadText(codesText(codes, username), 'parley-recovery-codes.txt');
    status.textContent = 'Download started: parley-recovery-codes.txt';
  });

  const copy = el('button', {
    id: 'copy-codes', className: 'btn secondary', text: 'Copy', attrs: { type: 'button' },
  });
  copy.addEventListener('click', async () => {
    try {
      if (!navigator.clipboard) throw new Error('no clipboard');
      await navigator.clipboard.writeText(codes.join('\n') + '\n');
      status.textContent = 'Copied the codes to the clipboard.';
    } catch {
      status.textContent = 'This browser did not allow copying. Select the codes and copy them yourself, or download them.';
    }
  });

  return el('div', { className: 'codes-panel' },
    list,
    el('div', { className: 'actions' }, download, copy),
    status);
}
