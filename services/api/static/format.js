// Human formats: sizes, dates, durations, labels.

const BYTE_UNITS = ["B", "KB", "MB", "GB", "TB"];

/** 1234567 -> "1.2 MB" (binary multiples, as file managers show them). */
export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined || Number.isNaN(bytes)) return "—";
  let value = Number(bytes);
  let unit = 0;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  if (unit === 0) return `${value} B`;
  const digits = value >= 100 ? 0 : 1;
  return `${value.toFixed(digits).replace(/\.0$/, "")} ${BYTE_UNITS[unit]}`;
}

const numberFormat = new Intl.NumberFormat();
export function formatCount(n) {
  return n === null || n === undefined ? "—" : numberFormat.format(n);
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const fullDateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "long" });

/** Local date and time, e.g. "Nov 28, 2026, 2:41 PM". */
export function formatDateTime(iso) {
  return iso ? dateTime.format(new Date(iso)) : "—";
}

export function formatFullDateTime(iso) {
  return iso ? fullDateTime.format(new Date(iso)) : "";
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const STEPS = [
  ["year", 365 * 86400],
  ["month", 30 * 86400],
  ["day", 86400],
  ["hour", 3600],
  ["minute", 60],
];

/** "in 7 days", "in 3 hours", "2 minutes ago". */
export function formatRelative(iso, now = Date.now()) {
  if (!iso) return "—";
  const seconds = (new Date(iso).getTime() - now) / 1000;
  for (const [unit, size] of STEPS) {
    if (Math.abs(seconds) >= size) return relative.format(Math.round(seconds / size), unit);
  }
  return seconds >= 0 ? "in under a minute" : "just now";
}

/** 604800 -> "7 days", 3600 -> "1 hour", 90 -> "90 seconds". */
export function formatDuration(seconds) {
  for (const [unit, size] of STEPS) {
    if (seconds >= size && seconds % size === 0) {
      const n = seconds / size;
      return `${n} ${unit}${n === 1 ? "" : "s"}`;
    }
  }
  for (const [unit, size] of STEPS) {
    if (seconds >= size) {
      const n = Math.round((seconds / size) * 10) / 10;
      return `${n} ${unit}s`;
    }
  }
  return `${seconds} second${seconds === 1 ? "" : "s"}`;
}

export const TYPE_LABELS = { series: "Series", books: "Books", both: "Series + Books" };
/** The table's format chip: the format's key in capitals ("JSON", "CSV", "MD"), for any format;
 * a compressed export's adds its file suffix ("CSV.GZ"). */
export function formatChip(format, compression = "none") {
  const chip = String(format).toUpperCase();
  return compression && compression !== "none" ? `${chip}.GZ` : chip;
}
export const STATUS_LABELS = {
  pending: "Pending",
  running: "Running",
  completed: "Completed",
  failed: "Failed",
  cancelled: "Cancelled",
};

export const IN_FLIGHT = new Set(["pending", "running"]);
export function isInFlight(exp) {
  return IN_FLIGHT.has(exp.status);
}
