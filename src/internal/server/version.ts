/** The package's version, as `info` shows it (a test holds it to package.json's). */
export const version = "0.1.0"
