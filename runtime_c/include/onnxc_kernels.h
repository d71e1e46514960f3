/* placeholder: to be replaced by the kernel declarations */
