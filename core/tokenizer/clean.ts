/**
 * open_clip's caption cleaning (`_clean_lower`): ftfy.fix_text, html.unescape twice, strip, collapse
 * whitespace the way Python's str.split() sees it, lowercase.
 */
import { fixText } from './ftfy/index.ts';
import { htmlUnescape } from './text/html-unescape.ts';
import { pyLower, pySplit, pyStrip } from './text/python-text.ts';

/** open_clip `basic_clean`. */
function basicClean(text: string): string {
  return pyStrip(htmlUnescape(htmlUnescape(fixText(text))));
}

/** open_clip `whitespace_clean`. */
function whitespaceClean(text: string): string {
  return pySplit(text).join(' ');
}

/** The text open_clip actually tokenizes: `whitespace_clean(basic_clean(text)).lower()`. */
export function cleanText(text: string): string {
  return pyLower(whitespaceClean(basicClean(text)));
}
