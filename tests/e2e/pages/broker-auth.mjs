// The broker account a test gave this page in its URL fragment
// (`#broker=URL&user=NAME&pass=SECRET`, lib.mjs `brokerAuthFragment`): the
// shipped broker configs admit no anonymous client. With `broker` in the
// fragment the account is for that broker only (a test may point the same page
// at an open private broker too); without it, for any.
export function brokerAuth(brokers = []) {
  const h = new URLSearchParams(location.hash.slice(1));
  if (!h.get('user')) return {};
  if (h.get('broker') && !brokers.includes(h.get('broker'))) return {};
  return { username: h.get('user'), password: h.get('pass') ?? '' };
}
