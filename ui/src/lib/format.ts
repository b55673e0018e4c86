// Display helpers in the window's locale (see i18n/): sizes in decimal units (as file managers
// show them), short local times, percentages. Formatters are made on first use, after the
// locale was chosen at start.
import { locale } from "./i18n";

const UNITS = ["B", "kB", "MB", "GB", "TB"];

let formatters: {
  digits: Intl.NumberFormat[];
  sameDay: Intl.DateTimeFormat;
  otherDay: Intl.DateTimeFormat;
  full: Intl.DateTimeFormat;
  percent: Intl.NumberFormat;
} | null = null;

function format() {
  formatters ??= {
    // 0, 1 and 2 decimals: "250 kB", "12.0 MB", "1.50 GB" ("1,50 GB" in German).
    digits: [0, 1, 2].map((d) => new Intl.NumberFormat(locale, { minimumFractionDigits: d, maximumFractionDigits: d })),
    sameDay: new Intl.DateTimeFormat(locale, { hour: "2-digit", minute: "2-digit" }),
    otherDay: new Intl.DateTimeFormat(locale, { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" }),
    full: new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeStyle: "short" }),
    percent: new Intl.NumberFormat(locale, { style: "percent", maximumFractionDigits: 0 }),
  };
  return formatters;
}

export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return "—";
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < UNITS.length - 1) {
    value /= 1000;
    unit += 1;
  }
  const digits = unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${format().digits[digits].format(value)} ${UNITS[unit]}`;
}

export function formatTime(rfc3339: string): string {
  const date = new Date(rfc3339);
  if (Number.isNaN(date.getTime())) return rfc3339;
  const now = new Date();
  return date.toDateString() === now.toDateString() ? format().sameDay.format(date) : format().otherDay.format(date);
}

/** Date and time in full, for a tooltip: "Apr 12, 2026, 2:03 PM", "12.04.2026, 14:03". */
export function formatFullTime(rfc3339: string): string {
  const date = new Date(rfc3339);
  return Number.isNaN(date.getTime()) ? rfc3339 : format().full.format(date);
}

/** A whole percentage: "42%", "42 %" in German. */
export function formatPercent(pct: number): string {
  return format().percent.format(pct / 100);
}

export function percent(done: number, total: number): number {
  if (total <= 0) return done > 0 ? 100 : 0;
  return Math.min(100, Math.round((done / total) * 100));
}
