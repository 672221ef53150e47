/**
 * Configuration helpers shared by the Layers that read the environment.
 */
import { Config, ConfigProvider, Effect, Option } from "effect"

/**
 * A string variable where set-but-empty is a value of its own: Effect's
 * environment providers read an empty variable as missing, so a plain
 * `withDefault` would turn `NAME=` into the default. When the current
 * provider has no value, the environment is read again keeping empty
 * strings; only a variable that is not set at all gives `fallback`.
 */
export const stringKeepingEmpty = (name: string, fallback: string): Config.Config<string> =>
  Config.String(name).pipe(
    Config.option,
    Config.mapEffect(Option.match({
      onSome: Effect.succeed,
      onNone: () =>
        Config.String(name).pipe(Config.withDefault(fallback)).parse(ConfigProvider.fromEnv({ preserveEmptyStrings: true }))
    }))
  )
