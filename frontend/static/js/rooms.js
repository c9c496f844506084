// rooms.js: what the room pages share: reading the room id from the
// address, the names of the roles, and reading a room view from the API.

/** Room ids are URL-safe base64 (A–Z a–z 0–9 - _); anything else is no room. */
const ROOM_ID = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * The room id in the address, such as "abc" in /join/abc or
 * /rooms/abc/settings: the path segment after prefix. Returns '' when the
 * path does not have that shape or the id cannot be one.
 * @param {string} prefix "/join/" or "/rooms/"
 * @param {string} [suffix] what follows the id, such as "/settings"
 * @returns {string}
 */
export function roomIdFromPath(prefix, suffix = '') {
  let path = window.location.pathname;
  if (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1);
  if (!path.startsWith(prefix) || !path.endsWith(suffix)) return '';
  const id = path.slice(prefix.length, path.length - suffix.length);
  return ROOM_ID.test(id) ? id : '';
}

/** Every role a person can have in a room, most rights first. */
export const ROOM_ROLES = /** @type {const} */ (['host', 'moderator', 'member', 'viewer', 'guest']);

/** @type {Record<string, string>} */
const ROLE_NAMES = {
  host: 'Host',
  moderator: 'Moderator',
  member: 'Member',
  viewer: 'Viewer',
  guest: 'Guest',
};

/**
 * A role as people read it: "Host" for "host"; unknown roles as they are.
 * @param {string} role
 */
export function roleName(role) {
  return ROLE_NAMES[role] ?? role;
}

/**
 * @typedef {Object} RoomView
 * @property {string} id
 * @property {string} name
 * @property {boolean} lobby
 * @property {boolean} guestsAllowed
 * @property {number} retentionDays the room's own retention of recordings; 0: the server's
 * @property {boolean} e2ee the room's meetings are end-to-end encrypted
 * @property {string} role the caller's role in the room, '' when none
 * @property {string[]} permissions actions such as "room.join", "room.manage"
 */

/**
 * Reads a room view from an API answer, keeping only well-typed fields.
 * @param {any} v
 * @returns {RoomView|null} null when v is not a room
 */
export function roomView(v) {
  if (!v || typeof v !== 'object' || typeof v.id !== 'string' || typeof v.name !== 'string') return null;
  return {
    id: v.id,
    name: v.name,
    lobby: v.lobby === true,
    guestsAllowed: v.guests_allowed === true,
    retentionDays: Number.isInteger(v.recording_retention_days) && v.recording_retention_days > 0 ? v.recording_retention_days : 0,
    e2ee: v.e2ee === true,
    role: typeof v.role === 'string' ? v.role : '',
    permissions: Array.isArray(v.permissions) ? v.permissions.filter((/** @type {unknown} */ p) => typeof p === 'string') : [],
  };
}

/**
 * Whether the caller may do action in the room.
 * @param {RoomView} room
 * @param {string} action
 */
export function can(room, action) {
  return room.permissions.includes(action);
}

/**
 * @param {string} iso
 * @returns {Date|null}
 */
export function parseTime(iso) {
  if (typeof iso !== 'string') return null;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : new Date(t);
}

/** @param {Date} when */
export function formatTime(when) {
  return when.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

/**
 * The address of /login that comes back to this page after signing in.
 * @returns {string}
 */
export function loginHere() {
  return '/login?next=' + encodeURIComponent(window.location.pathname);
}
