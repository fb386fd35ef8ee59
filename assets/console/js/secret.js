// Signing secrets, generated in the browser: 40 alphanumerics for GLPI, `whsec_` and the
// base64 of 32 random bytes for Standard Webhooks (and both).

const ALPHANUMERICS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

export function generateSecret(scheme) {
  if (scheme === 'GLPI') {
    let out = '';
    // 248 is the largest multiple of 62 below 256: drawing again above it keeps every
    // character equally likely.
    while (out.length < 40) {
      for (const byte of crypto.getRandomValues(new Uint8Array(64))) {
        if (byte < 248 && out.length < 40) out += ALPHANUMERICS[byte % 62];
      }
    }
    return out;
  }
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return `whsec_${btoa(String.fromCharCode(...bytes))}`;
}
