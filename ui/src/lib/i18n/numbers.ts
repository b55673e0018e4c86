// Numbers and plurals in the active language, for the catalogues' messages (kept apart from
// index.ts so the catalogues import it without a cycle).

let pluralRules = new Intl.PluralRules("en");
let numbers = new Intl.NumberFormat("en");

export function setNumberLocale(tag: string): void {
  pluralRules = new Intl.PluralRules(tag);
  numbers = new Intl.NumberFormat(tag);
}

/** A whole number or decimal as the locale writes it ("1,234" or "1.234"). */
export function formatNumber(n: number): string {
  return numbers.format(n);
}

/** One message per plural category of the active language; `#` stands for the number. */
export type PluralForms = Partial<Record<Intl.LDMLPluralRule, string>> & { other: string };

export function plural(n: number, forms: PluralForms): string {
  return (forms[pluralRules.select(n)] ?? forms.other).replace("#", formatNumber(n));
}
