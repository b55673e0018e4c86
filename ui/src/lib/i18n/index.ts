// The window's language: chosen once at start from the system's locale (asked of the shell,
// see src-tauri/src/locale.rs), English when the system asks for a language there is no
// catalogue for. Messages are plain values and functions in a typed catalogue (en.ts is the
// source of truth), so a missing or misspelt key fails `npm run check`.
import { invoke } from "@tauri-apps/api/core";
import { de } from "./de";
import { en, type Messages } from "./en";
import { setNumberLocale } from "./numbers";

export type { Messages };
export { formatNumber, plural, type PluralForms } from "./numbers";

const CATALOGUES: Record<string, Messages> = { en, de };

/** The active catalogue. Set once by `startLocale`, before the window is mounted. */
export let t: Messages = en;
/** The BCP 47 tag that dates and numbers are formatted with ("de-DE", "en-GB", "en"). */
export let locale = "en";

/** Chooses the catalogue for `tag`; English for anything without one (or no valid tag at all). */
export function useLocale(tag: string | null | undefined): void {
  let canonical: string | undefined;
  try {
    // "C", "POSIX" and other non-BCP 47 names throw here.
    canonical = tag ? Intl.getCanonicalLocales(tag.replace(/_/g, "-").replace(/[.@].*$/, ""))[0] : undefined;
  } catch {
    canonical = undefined;
  }
  const language = canonical?.split("-")[0].toLowerCase() ?? "en";
  const known = Object.hasOwn(CATALOGUES, language);
  t = known ? CATALOGUES[language] : en;
  // The region's conventions (en-GB's 24-hour clock, de-AT's dates) come with the system's tag.
  locale = known && canonical ? canonical : "en";
  setNumberLocale(locale);
  document.documentElement.lang = known ? language : "en";
}

/**
 * The system's locale from the shell (WebKitGTK's `navigator.language` reads `en-US` whenever
 * the C library could not set the locale named in `LANG`), the webview's as a fallback.
 */
export async function startLocale(): Promise<void> {
  const system = await invoke<string | null>("system_locale").catch(() => null);
  useLocale(system ?? navigator.language);
}
