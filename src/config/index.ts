/** The configuration: one schema with router defaults, YAML loading, validation with key paths, frozen result. */
export type * from './types.js';
export {
  loadConfig,
  parseConfig,
  describeConfig,
  configToDocument,
  type ParseOptions,
  type DescribeOptions,
} from './load.js';
export { validateConfig, readConfig, LOG_LEVELS } from './validate.js';
export { ConfigError, ConfigValueError, formatIssue, type ConfigIssue } from './errors.js';
export { DEFAULTS, DEFAULT_CONFIG_PATH } from './defaults.js';
export {
  parsePortRange,
  parsePortRanges,
  type PortParseOptions,
} from './ports.js';
export { parsePolicyRule, formatPolicyRule } from './rules.js';
export {
  validateTrigger,
  triggerContext,
  TRIGGER_KEYS,
  type TriggerContext,
  type ValidationResult,
} from './triggers.js';
export { deepFreeze } from './freeze.js';
