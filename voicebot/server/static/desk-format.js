// Formatting helpers of the agent desk (agent.js): label templates, timers, dates in the agent's
// time zone, intent names.

// "{count} calls in {days} days" with its values; a placeholder without a value stays as it is.
export function fill(template, values) {
  return template.replace(/\{(\w+)\}/g, (whole, key) => (key in values ? String(values[key]) : whole));
}

// snake_case names (intents, slots) as words: "card_lost" -> "card lost".
export const words = (name) => String(name ?? "").replaceAll("_", " ");

export class DeskFormat {
  constructor(locale, timeZone) {
    this.locale = locale;
    this.timeZone = timeZone || undefined; // null: the browser's
    this.two = this._numbers({ minimumIntegerDigits: 2, useGrouping: false });
    this.one = this._numbers({ useGrouping: false });
    this.time = this._dates({ timeStyle: "short" });
    this.dateTime = this._dates({ dateStyle: "medium", timeStyle: "short" });
  }

  _numbers(options) {
    try { return new Intl.NumberFormat(this.locale, options); } catch { return new Intl.NumberFormat("en", options); }
  }

  _dates(options) {
    // A zone the browser does not know (or a bad one) falls back to the browser's own.
    for (const timeZone of [this.timeZone, undefined]) {
      try { return new Intl.DateTimeFormat(this.locale, { ...options, timeZone }); } catch { /* next */ }
    }
    return new Intl.DateTimeFormat("en", options);
  }

  // Seconds as a timer: "04:07", "1:02:03" (digits of the UI language).
  clock(seconds) {
    const total = Math.max(0, Math.floor(Number(seconds) || 0));
    const hours = Math.floor(total / 3600);
    const minutes = Math.floor((total % 3600) / 60);
    const rest = total % 60;
    const tail = `${this.two.format(minutes)}:${this.two.format(rest)}`;
    return hours ? `${this.one.format(hours)}:${tail}` : tail;
  }

  number(value) { return this.one.format(value); }

  // Epoch seconds as a time of day / a date and time, in the agent's zone.
  timeOf(epochS) { return this.time.format(new Date(epochS * 1000)); }
  dateTimeOf(epochS) { return this.dateTime.format(new Date(epochS * 1000)); }
}
