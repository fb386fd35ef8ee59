// The API token, kept for the browser session (sessionStorage: gone when the tab closes).

const KEY = 'hookline.token';

export function token() {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function signIn(value) {
  sessionStorage.setItem(KEY, value);
}

export function signOut() {
  sessionStorage.removeItem(KEY);
}
